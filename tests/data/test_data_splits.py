"""Splits: disjoint, complete, reproducible, patient-safe, and shared through a manifest."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from segkit.data import DataError, Sample, Split, find_samples, split_samples


def _samples(n: int, labels=(1, 2, 3), patients: int | None = None) -> list[Sample]:
    """``n`` fake samples ordered by label, then patient, as the Figshare files are."""
    per_label = n // len(labels)
    samples = []
    for i in range(n):
        label = labels[min(i // per_label, len(labels) - 1)]
        patient = f"p{i * patients // n}" if patients else None
        path = Path(f"{i}.png")
        samples.append(Sample(str(i), path, path, "folders", label=label, patient=patient))
    return samples


def _check_partition(split: Split, samples):
    parts = [set(split.train), set(split.val), set(split.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == {s.key for s in samples}


@pytest.mark.parametrize("method", ["random", "blocks", "group"])
def test_split_is_a_reproducible_partition(method):
    samples = _samples(600, patients=30)
    split = split_samples(samples, method, seed=3)
    _check_partition(split, samples)
    assert split == split_samples(list(reversed(samples)), method, seed=3)
    assert split != split_samples(samples, method, seed=4)
    assert 0.7 < len(split.train) / 600 < 0.9
    assert 0.05 < len(split.val) / 600 < 0.15


def test_stratified_by_label():
    samples = _samples(900)
    split = split_samples(samples, "blocks", block_size=10)
    label_of = {s.key: s.label for s in samples}
    for part in (split.train, split.val, split.test):
        counts = Counter(label_of[k] for k in part)
        assert max(counts.values()) - min(counts.values()) <= 10


def test_blocks_keep_consecutive_slices_together():
    samples = _samples(300)
    split = split_samples(samples, "blocks", block_size=20, seed=1)
    part_of = {k: name for name in ("train", "val", "test") for k in getattr(split, name)}
    for label in (1, 2, 3):
        keys = [s.key for s in samples if s.label == label]
        for start in range(0, len(keys), 20):
            assert len({part_of[k] for k in keys[start : start + 20]}) == 1


def test_group_split_keeps_patients_apart(lgg_root):
    samples = find_samples(lgg_root)
    split = split_samples(samples)  # auto: every sample has a patient
    assert split.method == "group" and split.group_by == "patient"
    train, val, test = split.select(samples)
    patients = [{s.patient for s in part} for part in (train, val, test)]
    assert all(patients) and not (patients[0] & patients[1] or patients[0] & patients[2])


def test_auto_uses_blocks_without_patients():
    split = split_samples(_samples(90))
    assert split.method == "blocks" and split.block_size == 20 and split.stratified


def test_group_by_a_function():
    samples = _samples(100)
    split = split_samples(samples, "group", group_by=lambda s: int(s.key) // 5)
    part_of = {k: name for name in ("train", "val", "test") for k in getattr(split, name)}
    assert all(part_of[str(i)] == part_of[str(i - i % 5)] for i in range(100))


def test_manifest_round_trip(tmp_path):
    samples = _samples(60)
    split = split_samples(samples, "random", seed=7)
    path = split.save(tmp_path / "runs" / "split.json")
    loaded = Split.load(path)
    assert loaded == split
    data = loaded.to_dict()
    assert {"method", "seed", "fractions", "train", "val", "test"} <= data.keys()
    assert loaded.select(samples)[2] == [s for s in samples if s.key in set(split.test)]


def test_manifest_errors(tmp_path):
    split = split_samples(_samples(60), "random")
    with pytest.raises(DataError, match="not in the data"):
        split.select(_samples(30))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataError, match="not a split manifest"):
        Split.load(tmp_path / "bad.json")


def test_bad_arguments():
    with pytest.raises(ValueError, match="sum"):
        split_samples(_samples(30), fractions=(0.5, 0.1, 0.1))
    with pytest.raises(ValueError, match="method"):
        split_samples(_samples(30), "kfold")
    with pytest.raises(ValueError, match="patient"):
        split_samples(_samples(30), "group")
