"""Multi-class runs: a label-map data set trains a softmax model scored on its foreground."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner

from segkit import data, reports, training
from segkit.cli import cli
from segkit.demo import sample_dir
from segkit.exporting import export
from segkit.inference import load_model, predict
from segkit.runs import load_keras

pytestmark = pytest.mark.backend

TINY = {
    "image_size": (32, 32),
    "batch_size": 2,
    "epochs": 1,
    "model_config": {"base_filters": 4, "depth": 2},
    "workers": 1,
    "split": "random",
    "fractions": (0.67, 0.33, 0.0),
}
TUMOUR_TYPES = ["background", "meningioma", "glioma", "pituitary"]


@pytest.fixture(scope="module")
def four_class_run(tmp_path_factory):
    """A tiny model trained for one epoch on the bundled slices as background + tumour type."""
    folder = tmp_path_factory.mktemp("multiclass")
    training.train(
        "unet",
        sample_dir(),
        folder / "run",
        quiet=True,
        classes="tumour-type",
        cache=str(folder / "cache"),
        **TINY,
    )
    return folder / "run"


def test_tumour_types_train_a_four_class_model(four_class_run):
    config = json.loads((four_class_run / "config.json").read_text())["config"]
    assert config["class_names"] == TUMOUR_TYPES
    assert load_model(four_class_run).network.output_shape == (None, 32, 32, 4)
    assert "val_dice" in (four_class_run / "log.csv").read_text()


@pytest.mark.filterwarnings("ignore:.*look unlike the images")  # 4 slices give a narrow range
def test_predict_writes_label_maps_class_probabilities_and_overlays(four_class_run, tmp_path):
    out = tmp_path / "pred"
    written = predict(
        four_class_run,
        [sample_dir() / "images"],
        out,
        probabilities=True,
        overlays=True,
        true_masks=sample_dir() / "masks",
    )
    for path in written:
        label_map = iio.imread(path, mode="P")  # palette PNG: the class indices
        image = iio.imread(sample_dir() / "images" / path.name.replace("_mask", ""))
        assert label_map.dtype == np.uint8 and label_map.max() <= 3
        assert label_map.shape == image.shape[:2]
    stem = written[0].stem[: -len("_mask")]
    for name in TUMOUR_TYPES[1:]:
        assert (out / f"{stem}_prob_{name}.png").is_file()
    assert iio.imread(out / f"{stem}_overlay.png").shape[-1] == 3


@pytest.mark.filterwarnings("ignore:.*look unlike the images")
def test_evaluate_scores_the_run_per_class(four_class_run):
    report = reports.evaluate(four_class_run, sample_dir())
    assert list(report["classes"]) == TUMOUR_TYPES[1:]
    assert len(report["images"][0]["classes"]) == 3


@pytest.mark.filterwarnings("ignore:.*look unlike the images")
def test_evaluate_scores_regions_of_the_predicted_label_maps(four_class_run):
    report = reports.evaluate(four_class_run, sample_dir(), regions="tumour=1,2,3;glioma=2")
    assert report["regions"] == {"tumour": [1, 2, 3], "glioma": [2]}
    assert list(report["classes"]) == ["tumour", "glioma"]
    # Every bundled slice holds a tumour, so the tumour region counts every image.
    assert report["classes"]["tumour"]["n_images"] == len(data.find_samples(sample_dir()))


@pytest.mark.filterwarnings("ignore:.*look unlike the images")
def test_onnx_export_predicts_the_same_label_maps(four_class_run, tmp_path, backend):
    onnx_path = tmp_path / "model.onnx"
    if backend == "jax":  # JAX cannot export: a TensorFlow process does, as a user would
        env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
        command = ["export", "--model", str(four_class_run), "--out", str(onnx_path)]
        subprocess.run([sys.executable, "-m", "segkit.cli", *command], check=True, env=env)
    else:
        export(four_class_run, onnx_path)
    keras_out, onnx_out = tmp_path / "keras", tmp_path / "onnx"
    predict(four_class_run, [sample_dir() / "images"], keras_out)
    predict(onnx_path, [sample_dir() / "images"], onnx_out)
    for path in sorted(keras_out.glob("*_mask.png")):
        # Label maps are palette PNGs: read the indices, not the colours.
        a, b = iio.imread(path, mode="P"), iio.imread(onnx_out / path.name, mode="P")
        assert a.max() <= 3 and np.mean(a != b) < 1e-3, path.name  # ties may differ


def test_cli_trains_label_maps_named_by_classes_json(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    samples = data.find_samples(sample_dir())
    for sample in samples:
        # The bundled slices as label-map files: the foreground carries the tumour type.
        image, mask = data.read_pair(sample, num_classes=4, class_source="sample-label")
        iio.imwrite(root / "images" / f"{sample.key}.png", image[..., 0])
        iio.imwrite(root / "masks" / f"{sample.key}_mask.png", mask)
    (root / "classes.json").write_text(json.dumps(TUMOUR_TYPES))
    keys = tuple(s.key for s in samples)
    split = data.Split("random", 0, (0.67, 0.33, 0.0), keys[:4], keys[4:], ())
    split.save(tmp_path / "split.json")
    args = ["train", "--data", str(root), "--out", str(tmp_path / "run"), "--quiet"]
    args += ["--image-size", "32", "--batch-size", "2", "--epochs", "1"]
    args += ["--manifest", str(tmp_path / "split.json"), "--cache", str(tmp_path / "cache")]
    args += ["--model-config", "base_filters=4", "--model-config", "depth=2"]
    args += ["--loss", "bce_dice", "--loss-arg", "include_background=true"]
    args += ["--loss-arg", "class_weights=[0, 1, 2, 1]"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["class_names"] == TUMOUR_TYPES and config["classes"] is None
    loss = load_keras(tmp_path / "run" / "last.keras", compile=True).loss.get_config()
    assert loss["mode"] == "multiclass" and loss["include_background"] is True
    assert loss["class_weights"] == [0.0, 1.0, 2.0, 1.0]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"classes": "tumour-type", "mode": "binary"}, "mode binary takes 0/255 masks"),
        ({"mode": "multiclass"}, "mode multiclass needs label maps"),
        ({"classes": "tumour-type", "num_classes": 3}, "num_classes=3 but"),
        ({"classes": "tumours"}, "classes must be 'tumour-type'"),
    ],
)
def test_settings_that_do_not_fit_the_data_are_refused(tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        training.train("unet", sample_dir(), tmp_path / "run", quiet=True, **settings)
    assert not (tmp_path / "run" / "config.json").exists()
