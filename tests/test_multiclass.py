"""Multi-class runs: a label-map data set trains a softmax model scored on its foreground."""

from __future__ import annotations

import json

import imageio.v3 as iio
import pytest
from click.testing import CliRunner

from segkit import data, reports, training
from segkit.cli import cli
from segkit.demo import sample_dir
from segkit.inference import predict

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


@pytest.mark.filterwarnings("ignore:.*look unlike the images")  # 4 slices give a narrow range
def test_tumour_types_train_a_four_class_model(tmp_path):
    model = training.train(
        "unet",
        sample_dir(),
        tmp_path / "run",
        quiet=True,
        classes="tumour-type",
        cache=str(tmp_path / "cache"),
        **TINY,
    )
    assert model.output_shape == (None, 32, 32, 4)
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["class_names"] == TUMOUR_TYPES
    log = (tmp_path / "run" / "log.csv").read_text()
    assert "val_dice" in log

    # Predict writes label maps 0..3 at each image's size; evaluate scores them per class.
    written = predict(tmp_path / "run", [sample_dir() / "images"], tmp_path / "pred")
    for path in written:
        assert iio.imread(path).max() <= 3
    report = reports.evaluate(tmp_path / "run", sample_dir())
    assert list(report["classes"]) == TUMOUR_TYPES[1:]
    assert len(report["images"][0]["classes"]) == 3


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
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["class_names"] == TUMOUR_TYPES and config["classes"] is None


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
