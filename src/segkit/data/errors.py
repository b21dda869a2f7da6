"""What can be wrong with input data: the error raised, and the problem a scan reports.

A leaf module: every other part of `segkit.data` imports it, and it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class DataError(ValueError):
    """Input data that segkit cannot use; the message names the file(s) at fault.

    Attributes:
        path: the file at fault, where there is one.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a data folder, as found by `find_samples` or inspection.

    Attributes:
        file: the file (or folder) at fault.
        problem: what is wrong, in words (``"missing mask"``, ``"duplicate of 12.png"``, ...).
    """

    file: str
    problem: str

    def to_dict(self) -> dict[str, str]:
        """The problem as ``{"file": ..., "problem": ...}``."""
        return {"file": self.file, "problem": self.problem}

    def __str__(self) -> str:
        return f"{self.file}: {self.problem}"
