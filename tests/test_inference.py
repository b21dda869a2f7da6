"""Prediction on image files: model specs, masks at original size, overlays, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import segkit
from segkit import data
from segkit.demo import sample_dir
from segkit.inference import image_files, load_model, overlay, predict, to_mask
from segkit.visualize import TRUE_COLOUR

pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    model = segkit.models.get("unet", input_shape=(32, 32, 1), base_filters=4, depth=2)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path


def test_masks_come_back_at_each_image_size(keras_file, tmp_path):
    written = predict(keras_file, [sample_dir() / "images"], tmp_path, probabilities=True)
    assert len(written) == 6
    for mask_path in written:
        key = mask_path.name.removesuffix("_mask.png")
        original = Image.open(sample_dir() / "images" / f"{key}.png")
        mask = np.asarray(Image.open(mask_path))
        assert mask.shape == (original.height, original.width)
        assert set(np.unique(mask)) <= {0, 255}
        assert (tmp_path / f"{key}_prob.png").is_file()


def test_overlays_show_true_and_predicted_outlines(keras_file, tmp_path):
    predict(
        keras_file,
        [sample_dir() / "images" / "955.png"],
        tmp_path,
        overlays=True,
        true_masks=sample_dir() / "masks",
    )
    picture = np.asarray(Image.open(tmp_path / "955_overlay.png"))
    assert picture.shape == (256, 256, 3)
    true_outline = np.all(picture == TRUE_COLOUR, axis=-1)
    assert true_outline.any()  # the true tumour outline is drawn


def test_threshold_decides_the_mask(keras_file, tmp_path):
    image = sample_dir() / "images" / "955.png"
    predict(keras_file, [image], tmp_path / "none", threshold=1.0)
    predict(keras_file, [image], tmp_path / "all", threshold=0.0)
    assert not np.asarray(Image.open(tmp_path / "none" / "955_mask.png")).any()
    assert np.asarray(Image.open(tmp_path / "all" / "955_mask.png")).all()


def test_run_folder_and_registry_name_are_model_specs(tmp_path):
    # A bare architecture name is untrained: refused unless asked for, naming what exists.
    with pytest.raises(ValueError, match=r"shipped: resunet\.figshare.*--random-weights"):
        load_model("resunet")
    segmenter = load_model("resunet", random_weights=True)
    assert segmenter.prep == data.Preprocessing() and segmenter.network.name == "resunet"
    assert load_model("resunet.figshare").name == "resunet.figshare"
    with pytest.raises(KeyError, match="unknown model 'unett'"):
        load_model("unett")
    with pytest.raises(FileNotFoundError, match="not a finished training run"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing.keras")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=f"cannot load model file {broken}"):
        load_model(broken)


def test_bad_inputs_name_the_file(keras_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.png does not exist"):
        predict(keras_file, [tmp_path / "nowhere.png"], tmp_path / "out")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes((sample_dir() / "images" / "955.png").read_bytes()[:500])
    with pytest.raises(data.DataError, match="cut.png"):
        predict(keras_file, [truncated], tmp_path / "out")
    with pytest.raises(ValueError, match="threshold must be between 0 and 1"):
        predict(keras_file, [truncated], tmp_path / "out", threshold=2)
    assert not list((tmp_path / "out").glob("*_mask.png"))  # nothing half-written


def test_unwritable_output_is_a_clear_error(keras_file, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PermissionError, match="cannot write to output folder"):
        predict(keras_file, [sample_dir() / "images" / "955.png"], blocker / "out")


def test_image_files_skips_masks_and_sorts_naturally(tmp_path):
    for name in ("10.png", "9.png", "9_mask.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in image_files([tmp_path])] == ["9.png", "10.png"]


def test_to_mask_and_overlay_shapes():
    probs = np.zeros((4, 4, 1), np.float32)
    probs[1:3, 1:3] = 0.9
    assert to_mask(probs).sum() == 4
    classes = np.zeros((4, 4, 3), np.float32)
    classes[..., 2] = 1
    assert np.all(to_mask(classes) == 2)
    assert overlay(np.zeros((4, 4, 1), np.uint8), to_mask(probs)).shape == (4, 4, 3)
