"""Choosing inference settings on validation data: the grid, its scores and the choice."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy import ndimage

import segkit
from segkit import data, training
from segkit.demo import sample_dir
from segkit.inference import InferenceSettings, Segmenter, load_model
from segkit.models import pretrained
from segkit.reports import evaluate
from segkit.tuning import POSTPROCESSING, THRESHOLDS, tune_inference

SPECKS = ((slice(8, 11), slice(8, 11)), (slice(244, 247), slice(120, 123)))


@pytest.fixture(scope="module")
def probability_slices(tmp_path_factory):
    """Slices whose pixels are the probabilities a model would give: 0.4 on the true tumour
    (the bundled masks, at 256x256), 0.9 on two 3x3 specks away from it, 0 elsewhere."""
    folder = tmp_path_factory.mktemp("slices")
    (folder / "images").mkdir()
    (folder / "masks").mkdir()
    for path in sorted((sample_dir() / "masks").glob("*_mask.png")):
        truth = np.asarray(Image.open(path).resize((256, 256), Image.Resampling.NEAREST)) > 0
        image = np.where(truth, 102, 0).astype(np.uint8)  # 102 / 255 = 0.4
        for speck in SPECKS:
            assert not ndimage.binary_dilation(truth, iterations=3)[speck].any()
            image[speck] = 230  # 0.9
        key = path.name.removesuffix("_mask.png")
        Image.fromarray(image).save(folder / "images" / f"{key}.png")
        Image.fromarray(truth.astype(np.uint8) * 255).save(folder / "masks" / path.name)
    return folder


def identity_model() -> Segmenter:
    """A "model" that returns its input: the probabilities are the slices' pixels / 255."""
    return Segmenter(lambda batch: batch, data.Preprocessing(size=(256, 256)), "identity")


def test_the_best_settings_recover_the_tumour(probability_slices):
    samples = data.find_samples(probability_slices)
    tuning = tune_inference(identity_model(), samples)
    assert len(tuning.rows) == 3 * len(POSTPROCESSING) * len(THRESHOLDS) and tuning.images == 6
    # Below 0.4 the whole tumour is found; 20 pixels drop the 9-pixel specks (largest would
    # too, later in the grid); the model's output is symmetric, so no TTA is the first best.
    assert tuning.best == InferenceSettings(threshold=0.35, tta="none", postprocess="min-size=20")
    assert tuning.score(tuning.best)["dice_mean"] == 1.0
    # At 0.5 only the specks are found: Dice 0 on every slice, and no slice is missed...
    plain = tuning.score(InferenceSettings())
    assert plain["dice_mean"] == 0.0 and plain["misses"] == 0
    # ... until they are dropped too: then every mask is empty, and "at least one region"
    # brings back the most probable one, a speck.
    dropped = tuning.score(InferenceSettings(postprocess="min-size=20"))
    assert dropped["misses"] == 6
    rescued = tuning.score(InferenceSettings(postprocess="min-size=20,at-least-one"))
    assert rescued["misses"] == 0 and rescued["dice_mean"] == 0.0


def test_the_record_and_the_table(probability_slices):
    tuning = tune_inference(identity_model(), data.find_samples(probability_slices), ttas=("none",))
    record = tuning.record("six test slices")
    assert record["chosen_on"] == "six test slices" and record["images"] == 6
    assert record["dice_mean"] == 1.0 and record["plain_dice_mean"] == 0.0
    assert record["table"] == tuning.rows
    lines = tuning.format_table(rows=3).splitlines()
    assert lines[0].split() == ["tta", "postprocess", "threshold", "dice", "misses"]
    assert lines[1].split() == ["none", "min-size=20", "0.35", "1.0000", "0"]
    assert len(lines) == 5 and "chosen: threshold 0.35, TTA none" in lines[-1]


@pytest.mark.backend
def test_each_score_is_the_per_image_dice_segkit_evaluate_gives(tmp_path):
    path = tmp_path / "tiny.keras"
    segkit.models.get("unet", input_shape=(32, 32, 1), base_filters=4, depth=2).save(path)
    model = load_model(path)
    images = sorted((sample_dir() / "images").glob("*.png"))
    probabilities = model.predict([data.read_image(p) for p in images])
    middle = float(np.round(np.median(probabilities), 2))  # masks neither empty nor full
    grid = [middle - 0.01, middle, middle + 0.01]
    # The bundled slices are mostly 512x512: scored at their own size, as evaluate does.
    tuning = tune_inference(model, data.find_samples(sample_dir()), thresholds=grid)
    for settings in (
        InferenceSettings(threshold=middle),
        InferenceSettings(threshold=grid[0], tta="flips", postprocess="largest,fill-holes"),
        InferenceSettings(threshold=grid[2], tta="dihedral", postprocess="min-size=100"),
    ):
        report = evaluate(model.with_settings(defaults=False, **vars(settings)), sample_dir())
        assert tuning.score(settings)["dice_mean"] == pytest.approx(report["dice_mean"], abs=1e-12)


def test_only_one_channel_models_with_samples_are_tuned(probability_slices):
    with pytest.raises(ValueError, match="needs validation samples; got none"):
        tune_inference(identity_model(), [])
    three = Segmenter(
        lambda batch: batch,
        data.Preprocessing(size=(256, 256), num_classes=3),
        "three classes",
    )
    with pytest.raises(ValueError, match="one-channel models; three classes predicts 3 classes"):
        tune_inference(three, data.find_samples(probability_slices))


# tools/tune_inference.py -------------------------------------------------------------------


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))


@pytest.fixture
def tiny_weights(tmp_path):
    """A tiny U-Net's weights file without inference defaults, and a split of the bundled
    slices with three validation slices."""
    tiny = {"input_shape": (32, 32, 1), "base_filters": 4, "depth": 2}
    path = tmp_path / "unet-tiny.npz"
    network = segkit.models.get("unet", **tiny)
    prep = {"size": (32, 32), "channels": 1, "normalize": "divide255"}
    pretrained.save_weights(network, path, builder="unet", config=tiny, preprocessing=prep)
    keys = [s.key for s in data.find_samples(sample_dir())]
    manifest = tmp_path / "split.json"
    data.Split("random", 0, (0.5, 0.5, 0.0), tuple(keys[:3]), tuple(keys[3:]), ()).save(manifest)
    return path, manifest


@pytest.mark.backend
def test_the_tool_stores_the_best_settings_in_a_weights_file(tiny_weights, tmp_path):
    from tune_inference import arrays_of, main

    path, manifest = tiny_weights
    before = arrays_of(path)
    args = ["--weights", str(path), "--data", str(sample_dir()), "--manifest", str(manifest)]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "t.json"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "arrays bit-identical (26)" in result.output
    record = json.loads((tmp_path / "t.json").read_text())
    header = pretrained.read_header(path)
    assert header["inference"] == record["settings"] and arrays_of(path) == before
    assert header["inference_chosen_on"].startswith(
        "3 validation slices of sample (split.json): per-image mean Dice "
    )
    assert record["images"] == 3 and len(record["table"]) == 432
    best = max(row["dice_mean"] for row in record["table"])
    assert record["dice_mean"] == best


@pytest.mark.backend
def test_the_tool_tunes_a_run_on_its_own_validation_split(tiny_weights, tmp_path):
    from tune_inference import main

    _, manifest = tiny_weights
    run = tmp_path / "run"
    training.train(
        "unet",
        sample_dir(),
        run,
        quiet=True,
        manifest=str(manifest),
        cache=str(tmp_path / "cache"),
        epochs=1,
        image_size=(32, 32),
        batch_size=2,
        model_config={"base_filters": 4, "depth": 2},
        workers=1,
    )
    result = CliRunner().invoke(main, ["--run", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    stored = json.loads((run / "inference.json").read_text())
    assert load_model(run).settings == InferenceSettings.from_dict(stored["settings"])
    assert stored["images"] == 3 and stored["chosen_on"].startswith("3 validation slices of ")
    refused = CliRunner().invoke(main, ["--run", str(run), "--manifest", str(manifest)])
    assert refused.exit_code == 2 and "tunes on the run's own data and split" in refused.output


@pytest.mark.slow
def test_train_weights_tunes_after_training_and_scores_with_and_without(tmp_path, monkeypatch):
    import train_weights

    keys = [s.key for s in data.find_samples(sample_dir())]
    manifest = tmp_path / "split.json"
    data.Split("random", 0, (0.5, 0.2, 0.3), tuple(keys[:3]), (keys[3],), tuple(keys[4:])).save(
        manifest
    )
    monkeypatch.setattr(train_weights, "ROOT", tmp_path)  # the weights file goes here
    (tmp_path / "src/segkit/weights").mkdir(parents=True)
    run = tmp_path / "run"
    args = ["--model", "unet", "--data", str(sample_dir()), "--out", str(run)]
    args += ["--manifest", str(manifest), "--epochs", "1", "--batch-size", "2", "--workers", "1"]
    args += ["--model-config", "base_filters=4", "--model-config", "depth=2", "--tag", "test"]
    args += ["--cache", str(tmp_path / "cache"), "--originals", str(tmp_path / "none"), "--quiet"]
    result = CliRunner().invoke(train_weights.main, args)
    assert result.exit_code == 0, result.output
    card = json.loads((run / "card.json").read_text())
    stored = json.loads((run / "inference.json").read_text())
    assert card["inference"]["settings"] == stored["settings"] and stored["images"] == 1
    assert card["test"]["n_images"] == card["test_without_defaults"]["n_images"] == 2
    header = pretrained.read_header(tmp_path / "src/segkit/weights/unet-test.npz")
    assert header["inference"] == stored["settings"]
    assert header["inference_chosen_on"] == card["inference"]["chosen_on"]
