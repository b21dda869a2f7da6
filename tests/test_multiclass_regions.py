"""Region runs on real Figshare slices: overlapping regions of the tumour-type label maps
("tumour" = any type, "glioma") trained as sigmoid channels, predicted as the label map nnU-Net
paints, and scored per region, through the API and the command line; and label maps with
unlabelled pixels trained with ignore_index."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner

from segkit import data, masks, reports, training
from segkit.cli import cli
from segkit.data.errors import DataError
from segkit.exporting import export
from segkit.inference import load_model, predict
from segkit.postprocess import region_around_peak
from segkit.runs import load_keras

pytestmark = pytest.mark.backend

REGIONS = "tumour=1,2,3;glioma=2"
TINY = {
    "image_size": (32, 32),
    "batch_size": 2,
    "epochs": 1,
    "model_config": {"base_filters": 4, "depth": 2},
    "workers": 1,
}


@pytest.fixture(scope="module")
def manifest(figshare_256, tmp_path_factory):
    """Six training and three validation slices, each tumour type in both."""
    samples = data.find_samples(figshare_256)
    by_type = {label: [s.key for s in samples if s.label == label] for label in (1, 2, 3)}
    train = tuple(key for keys in by_type.values() for key in keys[:2])
    val = tuple(keys[-1] for keys in by_type.values())
    path = tmp_path_factory.mktemp("split") / "split.json"
    data.Split("random", 0, (0.67, 0.33, 0.0), train, val, ()).save(path)
    return path


@pytest.fixture(scope="module")
def region_run(figshare_256, manifest, tmp_path_factory):
    folder = tmp_path_factory.mktemp("regions")
    training.train(
        "unet",
        figshare_256,
        folder / "run",
        quiet=True,
        classes="tumour-type",
        regions=REGIONS,
        manifest=str(manifest),
        cache=str(folder / "cache"),
        **TINY,
    )
    return folder / "run"


def test_regions_train_a_sigmoid_channel_each(region_run):
    config = json.loads((region_run / "config.json").read_text())["config"]
    assert config["regions"] == REGIONS
    network = load_model(region_run).network
    assert network.output_shape == (None, 32, 32, 2)
    assert network.get_layer("probabilities").get_config()["activation"] == "sigmoid"
    header = (region_run / "log.csv").read_text().splitlines()[0].split(",")
    assert {"val_dice", "val_dice_tumour", "val_dice_glioma"} <= set(header)


@pytest.mark.filterwarnings("ignore:.*look unlike the images")
def test_onnx_export_paints_regions_as_the_keras_model_does(
    region_run, figshare_256, manifest, tmp_path, backend
):
    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    onnx_path = tmp_path / "regions.onnx"
    if backend == "jax":  # JAX cannot export: a TensorFlow process does, as a user would
        env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
        command = ["export", "--model", str(region_run), "--out", str(onnx_path)]
        subprocess.run([sys.executable, "-m", "segkit.cli", *command], check=True, env=env)
    else:
        export(region_run, onnx_path)
    assert load_model(onnx_path).regions == load_model(region_run).regions
    keys = data.Split.load(manifest).val
    images = [figshare_256 / "images" / f"{key}.png" for key in keys]
    keras_maps = predict(region_run, images, tmp_path / "keras", threshold=0.3)
    onnx_maps = predict(onnx_path, images, tmp_path / "onnx", threshold=0.3)
    for a, b in zip(keras_maps, onnx_maps, strict=True):
        assert np.mean(iio.imread(a) != iio.imread(b)) < 1e-3, a.name  # float rounding only


@pytest.mark.filterwarnings("ignore:.*look unlike the images")
def test_predict_paints_the_regions_into_a_label_map(region_run, figshare_256, manifest):
    keys = data.Split.load(manifest).val
    images = [figshare_256 / "images" / f"{key}.png" for key in keys]
    out = region_run.parent / "pred"
    written = predict(region_run, images, out, probabilities=True, overlays=True, threshold=0.3)
    segmenter = load_model(region_run)
    for path, (_, _, probs) in zip(written, segmenter.probabilities(images), strict=True):
        label_map = iio.imread(path, mode="P")  # palette PNG: the class indices
        assert label_map.dtype == np.uint8 and label_map.shape == (256, 256)
        assert label_map.any()  # at 0.3 the barely trained model finds regions everywhere
        # Painted: tumour first (its own label 1, meningioma), then glioma (2) inside it.
        np.testing.assert_array_equal(
            label_map, masks.labels_from_regions(probs, [[1, 2, 3], [2]], 0.3)
        )
        stem = path.stem[: -len("_mask")]
        assert (out / f"{stem}_prob_tumour.png").is_file()
        assert (out / f"{stem}_prob_glioma.png").is_file()
        assert iio.imread(out / f"{stem}_overlay.png").shape[-1] == 3


@pytest.mark.filterwarnings("ignore:.*look unlike the images")
def test_at_least_one_paints_a_region_where_none_is_above_the_threshold(
    region_run, figshare_256, manifest
):
    keys = data.Split.load(manifest).val
    images = [figshare_256 / "images" / f"{key}.png" for key in keys]
    segmenter = load_model(region_run, postprocess="at-least-one")
    painted = dict(masks.paint_order([[1, 2, 3], [2]]))
    for _, _, probs in segmenter.probabilities(images):
        # Also with the glioma channel silenced, so the peak lies in the first region's
        # channel, which a label map's rule would take for background.
        for variant in (probs, probs * np.array([1, 0], np.float32)):
            assert_peak_region_painted(segmenter, variant, painted)


def assert_peak_region_painted(segmenter, probs, painted):
    above = float(probs.max()) + 0.01  # nothing passes: the painted map would be empty
    label_map = segmenter.to_mask(probs, threshold=above)
    peak = np.unravel_index(np.argmax(probs), probs.shape)
    region = region_around_peak(probs[..., peak[2]])
    assert region.any()
    np.testing.assert_array_equal(label_map, np.where(region, painted[peak[2]], 0))


@pytest.mark.filterwarnings("ignore:.*look unlike the images")
def test_evaluate_scores_each_region(region_run, figshare_256, manifest):
    report = reports.evaluate(region_run, figshare_256, manifest=manifest, subset="val")
    assert report["regions"] == {"tumour": [1, 2, 3], "glioma": [2]}
    assert list(report["classes"]) == ["tumour", "glioma"]
    assert report["classes"]["tumour"]["n_images"] == 3  # every slice holds a tumour
    table = reports.format_table(report).splitlines()
    assert [line.split()[0] for line in table[1:4]] == ["all", "tumour", "glioma"]


def test_cli_trains_predicts_and_scores_regions(figshare_256, manifest, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", str(figshare_256), "--out", str(run), "--quiet"]
    args += ["--classes", "tumour-type", "--regions", "1,2,3;glioma=2"]
    args += ["--image-size", "32", "--batch-size", "2", "--epochs", "1", "--workers", "1"]
    args += ["--manifest", str(manifest), "--cache", str(tmp_path / "cache")]
    args += ["--model-config", "base_filters=4", "--model-config", "depth=2"]
    args += ["--loss", "bce_dice", "--loss-arg", "include_background=true"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    image = figshare_256 / "images" / f"{data.Split.load(manifest).val[0]}.png"
    result = CliRunner().invoke(
        cli, ["predict", "--model", str(run), str(image), "--out", str(tmp_path / "p")]
    )
    assert result.exit_code == 0, result.output
    written = iio.imread(tmp_path / "p" / f"{image.stem}_mask.png", mode="P")  # a palette PNG
    assert set(np.unique(written)) <= {0, 1, 2}
    evaluate = ["evaluate", "--model", str(run), "--data", str(figshare_256), "--quiet"]
    evaluate += ["--manifest", str(manifest), "--subset", "val"]
    result = CliRunner().invoke(cli, evaluate)
    assert result.exit_code == 0, result.output
    rows = [line.split()[0] for line in result.output.splitlines()]
    assert rows[1:4] == ["all", "meningioma+glioma+pituitary", "glioma"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"regions": "1,2"}, "regions are sets of labels of label maps"),
        ({"classes": "tumour-type", "regions": "1,2", "mode": "multiclass"}, "mode multilabel"),
        ({"classes": "tumour-type", "mode": "multilabel"}, "give them with regions"),
        ({"classes": "tumour-type", "regions": "1,4"}, "holds the label 4"),
    ],
)
def test_region_settings_that_do_not_fit_are_refused(tmp_path, figshare_256, settings, message):
    with pytest.raises(ValueError, match=message):
        training.train("unet", figshare_256, tmp_path / "run", quiet=True, **settings)
    assert not (tmp_path / "run" / "config.json").exists()


def test_unlabelled_pixels_reach_training_with_ignore_index(figshare_256, manifest, tmp_path):
    """Label-map files marking a corner unlabelled (255) train once the loss ignores 255."""
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    train, val, _ = data.Split.load(manifest).select(data.find_samples(figshare_256))
    for sample in [*train, *val]:
        image, mask = data.read_pair(sample, num_classes=4, class_source="sample-label")
        mask[:32, :32] = 255
        iio.imwrite(root / "images" / f"{sample.key}.png", image[..., 0])
        iio.imwrite(root / "masks" / f"{sample.key}_mask.png", mask)
    (root / "classes.json").write_text(json.dumps(["background", "meningioma", "glioma", "pit"]))
    settings = {**TINY, "manifest": str(manifest), "cache": str(tmp_path / "cache")}
    with pytest.raises(DataError, match="holding the value 255"):
        training.train("unet", root, tmp_path / "refused", quiet=True, **settings)
    loss_args = {"ignore_index": 255}
    training.train("unet", root, tmp_path / "run", quiet=True, loss_args=loss_args, **settings)
    loss = load_keras(tmp_path / "run" / "last.keras", compile=True).loss.get_config()
    assert loss["ignore_index"] == 255
