"""Train/validation/test splits that keep a patient's slices together, saved as a manifest.

Neighbouring slices of one patient look almost alike. A random slice-wise split puts some of them
in training and their neighbours in the test set, so the test Dice measures memory of that
patient rather than generalisation, and overstates it. Split by patient when patients are known
(``method="group"``), or by blocks of consecutive slices when the files are ordered by patient but
carry no ID (``method="blocks"``, the Figshare PNG copies).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import natsort
import numpy as np

from segkit._io import write_json
from segkit.data.errors import DataError
from segkit.data.samples import Sample

METHODS = ("random", "group", "blocks")

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Which sample keys are for training, validation and testing, and how that was decided.

    Attributes:
        method: ``"random"``, ``"group"`` or ``"blocks"``.
        seed: the random seed used.
        fractions: the asked-for ``(train, val, test)`` fractions.
        train: sample keys for training.
        val: sample keys for validation.
        test: sample keys for testing.
        group_by: ``"group"``: the sample attribute the groups came from (``"patient"``).
        block_size: ``"blocks"``: consecutive slices per block.
        stratified: whether each label was split separately.
    """

    method: str
    seed: int
    fractions: tuple[float, float, float]
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    group_by: str | None = None
    block_size: int | None = None
    stratified: bool = False

    def select(self, samples: Sequence[Sample]) -> tuple[list[Sample], list[Sample], list[Sample]]:
        """The ``(train, val, test)`` samples among ``samples``, in the manifest's order.

        Raises:
            DataError: a key in the split has no sample (the split was made on other data).
        """
        by_key = {s.key: s for s in samples}
        missing = [k for k in (*self.train, *self.val, *self.test) if k not in by_key]
        if missing:
            shown = ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")
            raise DataError(f"{len(missing)} sample(s) of the split are not in the data: {shown}")
        return tuple([by_key[k] for k in keys] for keys in (self.train, self.val, self.test))

    def to_dict(self) -> dict:
        """The split as plain JSON-ready data (the manifest's content)."""
        data = asdict(self)
        data["fractions"] = list(self.fractions)
        for name in SPLIT_NAMES:
            data[name] = list(data[name])
        return data

    def save(self, path: str | Path) -> Path:
        """Write the split as a JSON manifest that training and evaluation share."""
        path = Path(path)
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Split:
        """Read a manifest written by `save`.

        Raises:
            DataError: the file is not a split manifest.
        """
        try:
            data = json.loads(Path(path).read_text())
            data["fractions"] = tuple(data["fractions"])
            for name in SPLIT_NAMES:
                data[name] = tuple(data[name])
            return cls(**data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path} is not a split manifest: {exc}") from exc


def split_samples(
    samples: Sequence[Sample],
    method: str = "auto",
    *,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    group_by: str | Callable[[Sample], object] = "patient",
    block_size: int = 20,
    stratify: bool = True,
) -> Split:
    """Split samples into train, validation and test.

    Args:
        samples: the samples to split.
        method: ``"group"`` keeps each group (patient) in one part; ``"blocks"`` cuts the
            naturally sorted samples of each label into blocks of ``block_size`` consecutive
            slices and keeps each block in one part; ``"random"`` splits slice by slice (leaks a
            patient's slices across parts, see the module notes); ``"auto"`` is ``"group"`` when
            every sample has a patient, else ``"blocks"``.
        fractions: ``(train, val, test)`` shares of the samples; they must sum to 1.
        seed: random seed; the same seed and samples give the same split.
        group_by: ``"group"``: a `Sample` attribute name or a function of the sample.
        block_size: ``"blocks"``: slices per block.
        stratify: split each label separately, so every part has the label mix of the whole
            (ignored where no sample has a label).

    Returns:
        The split; save it with `Split.save`.
    """
    if method == "auto":
        method = "group" if samples and all(s.patient for s in samples) else "blocks"
    if method not in METHODS:
        raise ValueError(f"method must be 'auto' or one of {METHODS}, not {method!r}")
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three shares summing to 1, not {fractions!r}")
    if block_size < 1:
        raise ValueError(f"block_size must be positive, not {block_size}")
    stratify = stratify and any(s.label is not None for s in samples)
    key_of = group_by if callable(group_by) else (lambda s: getattr(s, group_by))
    if method == "group" and any(key_of(s) is None for s in samples):
        raise ValueError(f"method='group' needs {group_by!r} on every sample; use 'blocks'")

    # Groups of samples that must stay together: a patient, a block of slices, or one slice.
    groups: dict[object, list[Sample]] = defaultdict(list)
    position_in_label: Counter = Counter()
    for sample in natsort.natsorted(samples, key=lambda s: s.key):
        if method == "group":
            groups[key_of(sample)].append(sample)
        elif method == "blocks":
            position = position_in_label[sample.label]
            position_in_label[sample.label] += 1
            groups[(sample.label, position // block_size)].append(sample)
        else:
            groups[sample.key].append(sample)

    # Stratify whole groups by their most common label, so a group is never cut in two.
    strata: dict[object, list[list[str]]] = defaultdict(list)
    for members in groups.values():
        label = Counter(s.label for s in members).most_common(1)[0][0] if stratify else None
        strata[label].append([s.key for s in members])

    rng = np.random.default_rng(seed)
    parts: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
    for label in natsort.natsorted(strata, key=str):
        assigned = _assign(strata[label], fractions, rng)
        for name, keys in zip(SPLIT_NAMES, assigned, strict=True):
            parts[name].extend(keys)

    return Split(
        method=method,
        seed=seed,
        fractions=tuple(float(f) for f in fractions),
        train=tuple(natsort.natsorted(parts["train"])),
        val=tuple(natsort.natsorted(parts["val"])),
        test=tuple(natsort.natsorted(parts["test"])),
        group_by=(group_by if isinstance(group_by, str) else "custom")
        if method == "group"
        else None,
        block_size=block_size if method == "blocks" else None,
        stratified=stratify,
    )


def _assign(groups: list[list[str]], fractions, rng) -> tuple[list[str], list[str], list[str]]:
    """Shuffle whole groups and cut them into three parts of about ``fractions`` of the samples.

    A group goes to the part that holds the middle of its run of samples, so group sizes never
    push a part far past its share.
    """
    order = rng.permutation(len(groups))
    total = sum(len(g) for g in groups)
    bounds = np.cumsum(fractions)[:2] * total
    parts: tuple[list[str], list[str], list[str]] = ([], [], [])
    done = 0
    for index in order:
        group = groups[index]
        middle = done + len(group) / 2
        parts[int(np.searchsorted(bounds, middle, side="right"))].extend(group)
        done += len(group)
    return parts
