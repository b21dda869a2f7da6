"""Progress of a long job, for people: one updating line on a terminal, a line now and then in
a log, nothing when asked to be quiet."""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Seconds between lines when the output is not a terminal (a log file, CI).
LOG_INTERVAL = 10.0


class Progress:
    """Counts finished items and shows the count, the rate and the time left.

    Args:
        total: items in the whole job.
        what: what is counted, e.g. ``"images"``.
        label: what the job is, e.g. ``"predict"``.
        stream: where to write (standard error by default, so output files and pipes of
            results stay clean).
        enabled: False writes nothing.
    """

    def __init__(
        self,
        total: int,
        what: str,
        label: str,
        *,
        stream: TextIO | None = None,
        enabled: bool = True,
    ):
        self.total, self.what, self.label = total, what, label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and total > 0
        self.done = 0
        self.start = self.last_line = time.perf_counter()
        self.terminal = self.enabled and getattr(self.stream, "isatty", lambda: False)()

    def update(self, count: int = 1) -> None:
        """Record ``count`` more finished items."""
        self.done += count
        if not self.enabled:
            return
        now = time.perf_counter()
        finished = self.done >= self.total
        if self.terminal:
            self.stream.write("\r" + self.line(now) + ("\n" if finished else ""))
            self.stream.flush()
        elif finished or now - self.last_line >= LOG_INTERVAL:
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()
            self.last_line = now

    def line(self, now: float | None = None) -> str:
        """``"predict: 40/160 images, 2.3 images/s, 52 s left"``."""
        elapsed = (now or time.perf_counter()) - self.start
        text = f"{self.label}: {self.done}/{self.total} {self.what}"
        if self.done and elapsed > 0:
            rate = self.done / elapsed
            text += f", {rate:.1f} {self.what}/s"
            left = (self.total - self.done) / rate
            text += f", {left:.0f} s left" if self.done < self.total else f", {elapsed:.0f} s"
        return text
