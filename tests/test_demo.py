"""The demo that the README's first command runs."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import segkit
from segkit import evaluation
from segkit.cli import cli
from segkit.demo import run_demo, sample_dir
from segkit.models import pretrained as weights


def test_bundled_sample_is_complete():
    folder = sample_dir()
    images = sorted(p.stem for p in (folder / "images").glob("*.png"))
    masks = sorted(p.stem.removesuffix("_mask") for p in (folder / "masks").glob("*_mask.png"))
    assert images == masks and len(images) == 6
    assert (folder / "ATTRIBUTION.md").read_text().count("CC BY 4.0") >= 1


@pytest.mark.backend
def test_demo_uses_shipped_weights_and_writes_overlays_and_a_report(tmp_path):
    report = run_demo(tmp_path)
    assert weights.available() == ["fast_unet.figshare", "resunet.figshare", "unet.figshare"]
    assert report["model"] == "resunet.figshare"  # the most accurate, not the first by name
    assert len(list(tmp_path.glob("*_overlay.png"))) == 6
    assert json.loads((tmp_path / "report.json").read_text())["n_images"] == 6
    # The figure the quickstart and model card quote for the six bundled slices, made with the
    # weights' inference defaults (dihedral TTA, threshold 0.3, post-processing).
    assert report["dice_mean"] == pytest.approx(0.757, abs=0.002)
    assert report["table"].splitlines()[1].split()[:3] == ["all", "6", "0.757"]
    # The report scores the very masks the demo wrote.
    dice = []
    for true_path in sorted((sample_dir() / "masks").glob("*_mask.png")):
        written = np.asarray(Image.open(tmp_path / true_path.name)) > 0
        dice.append(evaluation.score(written, np.asarray(Image.open(true_path)) > 0)["dice"])
    assert np.mean(dice) == pytest.approx(report["dice_mean"])


@pytest.mark.backend
def test_the_demo_without_the_inference_defaults_scores_as_before_them(tmp_path):
    report = run_demo(tmp_path, defaults=False)
    assert report["dice_mean"] == pytest.approx(0.740, abs=0.002)
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "cli"), "--no-defaults"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[2].split()[:3] == ["all", "6", "0.740"]  # progress: stderr


@pytest.mark.backend
def test_demo_of_a_model_without_weights_warns_that_they_are_random(tmp_path):
    assert not weights.available("attention_unet")
    with pytest.warns(UserWarning, match="RANDOM weights"):
        report = run_demo(tmp_path, model="attention_unet")
    assert report["model"] == "attention_unet" and "note" not in report


@pytest.mark.backend
def test_demo_with_shipped_weights_says_its_score_is_not_held_out(tmp_path, monkeypatch):
    # A tiny U-Net stands in for shipped weights; the demo must pick it up without warning.
    tiny = {"input_shape": (32, 32, 1), "base_filters": 4, "depth": 2}
    path = tmp_path / "unet-test.npz"
    prep = {"size": (32, 32), "channels": 1, "normalize": "divide255"}
    network = segkit.models.get("unet", **tiny)
    digest = weights.save_weights(network, path, builder="unet", config=tiny, preprocessing=prep)
    entry = weights.Pretrained("unet", "test", path.name, digest)
    monkeypatch.setattr(weights, "PRETRAINED", {("unet", "test"): entry})
    monkeypatch.setattr(weights, "weights_path", lambda e: tmp_path / e.filename)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # e.g. the random-weights warning
        report = run_demo(tmp_path / "demo")
    assert report["model"] == "unet.test"
    assert "not a held-out score" in report["note"]

    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("model: unet.test\n")
