"""The decoded-slice cache and in-memory loading."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from segkit.data import DataError, Preprocessing, SampleCache, find_samples, load_arrays
from segkit.data import cache as cache_module

SMALL = Preprocessing(size=(32, 32))


def test_load_arrays_shapes(folders_copy):
    samples = find_samples(folders_copy)
    images, masks = load_arrays(samples, SMALL, workers=2)
    assert images.shape == (6, 32, 32, 1) and images.dtype == np.float32
    assert masks.shape == (6, 32, 32, 1) and masks.dtype == np.uint8
    assert masks.max() == 1


def test_second_load_decodes_nothing(folders_copy, tmp_path, monkeypatch):
    samples = find_samples(folders_copy)
    first = load_arrays(samples, SMALL, cache=tmp_path / "cache")
    entries = list((tmp_path / "cache" / SMALL.key()).iterdir())
    assert len(entries) == 6 and all(p.suffix == ".npy" for p in entries)

    def no_decoding(*args):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(cache_module, "decode", no_decoding)
    second = load_arrays(samples, SMALL, cache=tmp_path / "cache")
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    image, mask = SampleCache(tmp_path / "cache").load(samples[0], SMALL)
    assert isinstance(image.base, np.memmap) or isinstance(image, np.memmap)


def test_cache_matches_direct_decoding(folders_copy, tmp_path):
    samples = find_samples(folders_copy)
    direct = load_arrays(samples, SMALL)
    cached = load_arrays(samples, SMALL, cache=tmp_path)
    assert np.array_equal(direct[0], cached[0]) and np.array_equal(direct[1], cached[1])


def test_key_follows_file_changes_and_preprocessing(folders_copy, tmp_path):
    cache = SampleCache(tmp_path)
    sample = find_samples(folders_copy)[0]
    before = cache.path(sample, SMALL)
    assert cache.path(sample, Preprocessing(size=(32, 32), normalize="zscore")) != before
    stat = sample.image.stat()
    os.utime(sample.image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache.path(sample, SMALL) != before


def test_failed_read_caches_nothing(folders_copy, tmp_path):
    path = folders_copy / "masks" / "38_mask.png"
    mask = np.asarray(Image.open(path)).copy()
    mask[0, 0] = 7
    Image.fromarray(mask).save(path)
    with pytest.raises(DataError, match="38_mask.png is not binary"):
        load_arrays(find_samples(folders_copy)[:1], SMALL, cache=tmp_path / "cache")
    assert [p for p in tmp_path.joinpath("cache").rglob("*") if p.is_file()] == []


def test_interrupted_write_leaves_no_entry(folders_copy, tmp_path, monkeypatch):
    sample = find_samples(folders_copy)[0]

    def interrupted_save(path, array):
        path.write_bytes(b"\x93NUMPY partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module.np, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        SampleCache(tmp_path / "cache").load(sample, SMALL)
    assert [p for p in tmp_path.joinpath("cache").rglob("*") if p.is_file()] == []
