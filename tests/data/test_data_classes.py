"""Multi-class data: label-map masks, classes.json, and the Figshare tumour types as classes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from segkit import data
from segkit.cli import cli
from segkit.data.cache import SampleCache
from segkit.resize import resize_labels
from tests.data.conftest import write_figshare_mat

TUMOUR_TYPES = ("background", "meningioma", "glioma", "pituitary")


def _label_map_folder(root: Path, masks: dict[str, np.ndarray], palette: bool = False) -> Path:
    """A folders-layout data set whose masks are the given label maps (grey images beside)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for key, mask in masks.items():
        iio.imwrite(root / "images" / f"{key}.png", np.full(mask.shape, 100, np.uint8))
        picture = Image.fromarray(mask.astype(np.uint8), "P" if palette else "L")
        if palette:  # bright colours whose brightness is not the index
            picture.putpalette([0, 0, 0, 255, 255, 0, 0, 0, 255, 255, 0, 0] + [0] * 756)
        picture.save(root / "masks" / f"{key}_mask.png")
    return root


def _three_classes() -> np.ndarray:
    mask = np.zeros((40, 40), np.uint8)
    mask[5:15, 5:15] = 1
    mask[20:30, 20:36] = 2
    mask[22:26, 22:26] = 3
    return mask


def test_label_map_png_is_read_by_value(tmp_path):
    truth = _three_classes()
    root = _label_map_folder(tmp_path / "d", {"a": truth})
    (sample,) = data.find_samples(root)
    image, mask = data.read_pair(sample, num_classes=4)
    np.testing.assert_array_equal(mask, truth)
    np.testing.assert_array_equal(data.read_mask(sample, num_classes=4), truth)
    np.testing.assert_array_equal(data.read_mask_file(sample.mask, num_classes=4), truth)


def test_palette_png_is_read_by_index(tmp_path):
    truth = _three_classes()
    root = _label_map_folder(tmp_path / "d", {"a": truth}, palette=True)
    (sample,) = data.find_samples(root)
    np.testing.assert_array_equal(data.read_pair(sample, num_classes=4)[1], truth)


def test_tiff_label_map(tmp_path):
    truth = _three_classes()
    path = tmp_path / "a_mask.tif"
    iio.imwrite(path, truth, plugin="tifffile")
    np.testing.assert_array_equal(data.read_mask_file(path, num_classes=4), truth)


def test_value_of_num_classes_or_more_names_file_and_value(tmp_path):
    root = _label_map_folder(tmp_path / "d", {"a": _three_classes()})
    (sample,) = data.find_samples(root)
    with pytest.raises(data.DataError, match=r"a_mask\.png.*value 3; classes are 0\.\.2"):
        data.decode(sample, data.Preprocessing(size=(32, 32), num_classes=3))


def test_binary_masks_read_as_before(figshare_512):
    samples = data.find_samples(figshare_512)[:3]
    prep = data.Preprocessing()
    assert prep.key() == "256x256-c1-divide255"  # cache entries of binary runs stay valid
    for sample in samples:
        assert set(np.unique(data.decode(sample, prep)[1]).tolist()) == {0, 1}
    with pytest.raises(data.DataError, match="value 255"):
        data.read_pair(samples[0], num_classes=4)  # a 0/255 file is not a label map


def test_resize_labels_keeps_every_class_where_it_covers_most():
    labels = np.zeros((64, 64), np.uint8)
    labels[8:24, 8:24] = 1
    labels[40:44, 40:44] = 2  # 4x4: one pixel after halving twice
    small = resize_labels(labels, (16, 16))
    assert small[10, 10] == 2 and small[4, 4] == 1 and small[0, 0] == 0
    assert set(np.unique(small).tolist()) == {0, 1, 2}


def test_classes_json_names_the_classes(tmp_path):
    root = _label_map_folder(tmp_path / "d", {"a": _three_classes()})
    (root / "classes.json").write_text(json.dumps(list(TUMOUR_TYPES)))
    assert data.resolve_classes(root).names == TUMOUR_TYPES
    with pytest.raises(ValueError, match="num_classes=3 but .*classes.json names 4"):
        data.resolve_classes(root, num_classes=3)
    (root / "classes.json").write_text('["only one"]')
    with pytest.raises(data.DataError, match="classes.json: expected a list"):
        data.resolve_classes(root)


def test_num_classes_alone_gives_default_names_and_binary_stays_binary(tmp_path):
    assert data.resolve_classes(tmp_path, num_classes=3).names == (
        "background",
        "class_1",
        "class_2",
    )
    assert data.resolve_classes(tmp_path) is None
    assert data.resolve_classes(tmp_path, num_classes=1) is None


def test_tumour_types_from_labels_csv_on_real_slices(figshare_512):
    classes = data.resolve_classes(figshare_512, classes="tumour-type")
    assert classes.names == TUMOUR_TYPES and classes.source == "sample-label"
    samples = data.find_samples(figshare_512)
    prep = data.Preprocessing.for_classes(classes)
    _, binary = data.load_arrays(samples, data.Preprocessing())
    _, labels = data.load_arrays(samples, prep)
    for sample, mask, label_map in zip(samples, binary, labels, strict=True):
        # The foreground is the binary mask's, pixel for pixel, coloured by the tumour type.
        np.testing.assert_array_equal(label_map, mask * sample.label)
    assert {int(m.max()) for m in labels} == {1, 2, 3}


def test_tumour_types_from_the_mat_label_field(tmp_path, figshare_512):
    """Real slices written as the Figshare release stores them: the class is its label field."""
    samples = data.find_samples(figshare_512)[::9]
    for sample in samples:
        image = iio.imread(sample.image).astype(np.int16) * 8
        mask = (iio.imread(sample.mask) > 0).astype(np.uint8)
        write_figshare_mat(tmp_path / "mat" / f"{sample.key}.mat", image, mask, sample.label, "1")
    classes = data.resolve_classes(tmp_path / "mat", classes="tumour-type")
    for sample, mat in zip(samples, data.find_samples(tmp_path / "mat"), strict=True):
        assert mat.label == sample.label
        _, label_map = data.decode(mat, data.Preprocessing.for_classes(classes))
        assert set(np.unique(label_map).tolist()) == {0, sample.label}
        truth = data.read_mask(mat, num_classes=4, class_source="sample-label")
        assert set(np.unique(truth).tolist()) == {0, sample.label}


def test_a_sample_without_label_names_its_file(tmp_path, figshare_512):
    root = tmp_path / "d"
    shutil.copytree(figshare_512, root)
    (root / "labels.csv").write_text("index,label\n")
    sample = data.find_samples(root)[0]
    prep = data.Preprocessing(num_classes=4, class_source="sample-label")
    with pytest.raises(data.DataError, match=rf"{sample.key}_mask\.png.*has no label"):
        data.decode(sample, prep)


def test_cache_keeps_label_maps_apart_from_binary(tmp_path, figshare_512):
    sample = data.find_samples(figshare_512)[-1]
    cache = SampleCache(tmp_path / "cache")
    prep = data.Preprocessing(num_classes=4, class_source="sample-label")
    first = cache.load(sample, prep)[1]
    np.testing.assert_array_equal(cache.load(sample, prep)[1], first)
    assert int(first.max()) == sample.label
    assert int(cache.load(sample, data.Preprocessing())[1].max()) == 1


def test_inspect_counts_pixels_and_images_per_class(figshare_512):
    report = data.inspect(figshare_512, classes="tumour-type")
    assert list(report.classes) == list(TUMOUR_TYPES)
    by_name = {name: report.labels[name] for name in TUMOUR_TYPES[1:]}
    assert {k: v["images"] for k, v in report.classes.items() if k != "background"} == by_name
    assert report.classes["background"]["images"] == report.n_pairs
    total = sum(c["coverage"] for c in report.classes.values())
    assert total == pytest.approx(1.0)
    assert "glioma" in report.format() and "classes" in report.to_dict()
    assert "classes" not in data.inspect(figshare_512).to_dict()  # binary report unchanged


def test_cli_inspect_with_classes_json(tmp_path):
    root = _label_map_folder(tmp_path / "d", {"a": _three_classes(), "b": np.zeros((40, 40))})
    (root / "classes.json").write_text('["background", "edema", "core", "enhancing"]')
    result = CliRunner().invoke(cli, ["data", "inspect", str(root), "--json"])
    assert result.exit_code == 0, result.output
    classes = json.loads(result.output)["classes"]
    assert classes["core"]["images"] == 1 and classes["background"]["images"] == 2
    assert classes["enhancing"]["coverage"] == pytest.approx(16 / 1600 / 2)
