"""Training on the volume layout, from the command line and the API, on volumes built from the
real LGG patients: the split keeps each volume in one part, decoded volumes are cached, and a
model trained on three modalities reads them all."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from lgg_volumes import build_layout

import segkit
from segkit.cli import cli
from segkit.reports import evaluate
from segkit.volumes import predict_volumes

pytestmark = pytest.mark.backend

# Ten patients (the fewest that leave a volume each for validation and test at 80/10/10), six
# slices each, at 64x64, trained at 32x32: a run of a few seconds.
NUMBERS = range(10, 16)
TINY = ["--model", "unet", "--model-config", "base_filters=4", "--model-config", "depth=2"]


def patients(lgg_root) -> list[str]:
    return sorted(p.name for p in lgg_root.iterdir() if p.is_dir())[:10]


def volume_of(key: str) -> str:
    return key.rsplit("_", 1)[0]


def test_cli_trains_on_volumes_split_by_volume(lgg_root, tmp_path):
    root = tmp_path / "data"
    build_layout(lgg_root, patients(lgg_root), root, numbers=NUMBERS, step=4)
    run, cache = tmp_path / "run", tmp_path / "cache"
    arguments = ["train", "--data", str(root), "--out", str(run), "--cache", str(cache), *TINY]
    arguments += ["--image-size", "32", "--epochs", "1", "--batch-size", "8", "--quiet"]
    arguments += ["--slices", "foreground+0.5"]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    split = json.loads((run / "split.json").read_text())
    assert [len(split[name]) for name in ("train", "val", "test")] == [48, 6, 6]
    assert split["method"] == "group" and split["group_by"] == "patient"
    parts = [{volume_of(k) for k in split[name]} for name in ("train", "val", "test")]
    assert [len(p) for p in parts] == [8, 1, 1]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    # Each volume read for training or validation is decoded once, into one cache entry.
    assert len(list(cache.rglob("volume-*.npy"))) == 9
    assert (run / "best.keras").is_file()
    record = json.loads((run / "config.json").read_text())
    assert record["config"]["slices"] == "foreground+0.5"
    assert record["volume_mapping"]["percentiles"] == [0.5, 99.5]
    # A run whose recorded mapping differs from this segkit's is refused, not silently remapped.
    record["volume_mapping"]["percentiles"] = [1.0, 99.0]
    (run / "config.json").write_text(json.dumps(record))
    case = next((root / "imagesTr").iterdir())
    with pytest.raises(ValueError, match=r"percentiles \[1.0, 99.0\]"):
        predict_volumes(run, [case], tmp_path / "masks")
    assert not (tmp_path / "masks").exists()


def test_api_trains_on_three_modalities_and_evaluates_volumes(lgg_root, tmp_path):
    root = tmp_path / "data"
    build_layout(
        lgg_root,
        patients(lgg_root),
        root,
        modalities=("pre-contrast", "flair", "post-contrast"),
        numbers=NUMBERS,
        step=4,
    )
    network = segkit.train(
        "unet",
        root,
        tmp_path / "run",
        channels=3,
        image_size=(32, 32),
        model_config={"base_filters": 4, "depth": 2},
        epochs=1,
        batch_size=8,
        cache=str(tmp_path / "cache"),
        quiet=True,
    )
    assert network.input_shape[-1] == 3
    assert len(list((tmp_path / "cache").rglob("32x32-c3-divide255/volume-*.npy"))) == 9
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    report = evaluate(
        tmp_path / "run", root, manifest=tmp_path / "run" / "split.json", subset="test"
    )
    [tested] = {volume_of(k) for k in split["test"]}
    assert [v["case"] for v in report["volumes"]] == [tested]
    assert report["n_images"] == len(NUMBERS) and report["n_volumes"] == 1


def test_slices_foreground_trains_only_on_slices_with_a_tumour(lgg_root, tmp_path):
    root = tmp_path / "data"
    cases = build_layout(lgg_root, patients(lgg_root), root, numbers=NUMBERS, step=4)
    run = tmp_path / "run"
    arguments = ["train", "--data", str(root), "--out", str(run), *TINY, "--image-size", "32"]
    arguments += ["--epochs", "1", "--batch-size", "8", "--slices", "foreground"]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    train_keys = json.loads((run / "split.json").read_text())["train"]
    with_tumour = [
        key for key in train_keys if cases[volume_of(key)].mask[int(key.rsplit("_", 1)[1])].any()
    ]
    assert 0 < len(with_tumour) < len(train_keys)  # the data holds both kinds of slice
    assert f"training on {len(with_tumour)}," in result.output


def test_two_of_three_modalities_train_as_two_channels(lgg_root, tmp_path):
    root = tmp_path / "data"
    modalities = ("pre-contrast", "flair", "post-contrast")
    build_layout(lgg_root, patients(lgg_root), root, modalities=modalities, numbers=NUMBERS, step=4)
    network = segkit.train(
        "unet",
        root,
        tmp_path / "run",
        channels=(1, 2),
        image_size=(32, 32),
        model_config={"base_filters": 4, "depth": 2},
        epochs=1,
        batch_size=8,
        quiet=True,
    )
    assert network.input_shape[-1] == 2
