"""What a new user trips over, tried as one would: each case failed before it was fixed.

These test the command line's behaviour, not numerics, so they run once (on the first
backend of `make test`), not once per backend.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from segkit.cli import cli
from segkit.data.intensity import IntensityRange
from segkit.demo import sample_dir
from segkit.inference import predict
from segkit.progress import Progress
from segkit.reports import format_table
from segkit.runs import RunFolder
from segkit.visualize import curves_figure

TINY = ("--image-size", 32, "--batch-size", 2, "--model-config", "base_filters=4")
TINY += ("--model-config", "depth=2", "--quiet")


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result, *words):
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("segkit: error: ")
    for word in words:
        assert word in result.stderr


@pytest.fixture
def manifest(tmp_path):
    from segkit import data

    keys = [s.key for s in data.find_samples(sample_dir())]
    path = tmp_path / "split.json"
    data.Split("random", 0, (0.5, 0.25, 0.25), tuple(keys[:4]), (keys[4],), (keys[5],)).save(path)
    return path


# 1. A bare architecture name is not a trained model.
@pytest.mark.parametrize(
    "args",
    [
        ("predict", "--model", "resunet", sample_dir() / "images", "--out", "m"),
        ("evaluate", "--model", "resunet", "--data", sample_dir()),
        ("export", "--model", "resunet", "--out", "m.onnx"),
    ],
)
def test_random_weights_are_never_used_silently(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    one_line_error(result, "resunet.figshare", "run folder", "--random-weights")
    assert list(tmp_path.iterdir()) == []


def test_random_weights_when_asked_for(tmp_path):
    image = sample_dir() / "images" / "955.png"
    result = invoke("predict", "--model", "fast_unet", image, "--out", tmp_path, "--random-weights")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "955_mask.png").is_file()


# 2. A first epoch stopped by bad data leaves nothing that blocks the same command.
def test_a_run_stopped_by_bad_data_runs_again_once_the_data_is_fixed(tmp_path, manifest):
    folder = tmp_path / "data"
    shutil.copytree(sample_dir(), folder)
    good = (folder / "images" / "955.png").read_bytes()
    (folder / "images" / "955.png").write_bytes(b"not a png")
    args = ("train", "--data", folder, "--out", tmp_path / "run", "--epochs", 1)
    args += ("--manifest", manifest, "--cache", tmp_path / "cache", *TINY)
    result = invoke(*args)
    one_line_error(result, "955.png")
    (folder / "images" / "955.png").write_bytes(good)
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "best.keras").is_file()
    # A run that finished an epoch is still protected.
    one_line_error(invoke(*args), "already holds a run", "--resume")


# 3. Long commands show progress, unless asked to be quiet.
def test_predict_and_evaluate_show_progress_unless_quiet(tmp_path):
    model = "resunet.figshare"
    result = invoke("predict", "--model", model, sample_dir() / "images", "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    assert "predict: 6/6 images" in result.stderr and "images/s" in result.stderr
    quiet = invoke("evaluate", "--model", model, "--data", sample_dir(), "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    loud = invoke("evaluate", "--model", model, "--data", sample_dir(), "--batch-size", 4)
    assert "evaluate: 6/6 images" in loud.stderr
    assert loud.stdout.splitlines()[1] == quiet.stdout.splitlines()[1]  # same scores


def test_progress_on_a_terminal_updates_one_line_with_time_left():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    shown = Progress(6, "images", "predict", stream=stream)
    for _ in range(6):
        shown.update()
    lines = stream.getvalue().split("\r")[1:]
    assert [line.split(",")[0] for line in lines] == [f"predict: {i}/6 images" for i in range(1, 7)]
    # The time left once three items finished after the first (see test_new_user_waits.py).
    assert "s left" in lines[3] and lines[-1].endswith("\n")
    silent = io.StringIO()
    Progress(4, "images", "predict", stream=silent, enabled=False).update(4)
    assert silent.getvalue() == ""


# 4. A missing extra is named.
def test_export_without_onnx_names_the_extra(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a)
    )
    result = invoke("export", "--model", "resunet.figshare", "--out", tmp_path / "m.onnx")
    one_line_error(result, "pip install 'segkit[export]'")


# 5. Resume takes --epochs (to train longer) and refuses other settings by name.
def test_resume_refuses_settings_it_would_ignore(tmp_path):
    result = invoke("train", "--resume", tmp_path, "--lr", 0.1, "--loss", "jaccard")
    one_line_error(result, "--lr", "--loss", "--init-from")


def test_resume_with_more_epochs_trains_longer(tmp_path, manifest):
    run = tmp_path / "run"
    common = ("--data", sample_dir(), "--manifest", manifest, "--cache", tmp_path / "c", *TINY)
    result = invoke("train", "--out", run, "--epochs", 1, *common)
    assert result.exit_code == 0, result.output
    result = invoke("train", "--resume", run, "--epochs", 2)
    assert result.exit_code == 0, result.output
    assert "after 2 of 2 epochs" in result.stdout
    assert len((run / "log.csv").read_text().splitlines()) == 3
    result = invoke("train", "--resume", run, "--epochs", 1)
    one_line_error(result, "already run 2 epochs")


# 6. Ctrl-C says how to go on.
def test_ctrl_c_says_how_to_resume_and_exits_130(tmp_path, monkeypatch):
    from segkit import training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", interrupted)
    result = invoke("train", "--data", sample_dir(), "--out", tmp_path / "run")
    assert result.exit_code == 130
    assert f"segkit train --resume {tmp_path / 'run'}" in result.stderr


# 7. A corrupt model file is not "not found".
def test_a_corrupt_model_file_is_called_corrupt(tmp_path, manifest):
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"not a model")
    for args in (
        ("predict", "--model", corrupt, sample_dir() / "images", "--out", tmp_path / "o"),
        ("train", "--data", sample_dir(), "--out", tmp_path / "r", "--init-from", corrupt),
    ):
        result = invoke(*args, *(("--manifest", manifest, *TINY) if args[0] == "train" else ()))
        one_line_error(result, "cannot load model file", str(corrupt))
        assert "does not exist" not in result.stderr and "not found" not in result.stderr


# 8. The message about a missing mask names the command-line switch, which works.
def test_missing_masks_name_the_switch_that_skips_them(tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(sample_dir(), folder)
    (folder / "masks" / "955_mask.png").unlink()
    result = invoke("evaluate", "--model", "resunet.figshare", "--data", folder, "--quiet")
    assert result.exit_code == 2 and "--on-problem skip" in result.stderr
    result = invoke(
        "evaluate", "--model", "resunet.figshare", "--data", folder, "--on-problem", "skip"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].split()[:2] == ["all", "5"]


# 9. Training says what it trains on and how it ended; one epoch draws whole-number ticks.
def test_training_reports_its_split_and_its_result(tmp_path, manifest):
    args = ("train", "--data", sample_dir(), "--out", tmp_path / "run", "--epochs", 1)
    result = invoke(*args, "--manifest", manifest, "--cache", tmp_path / "c", *TINY[:-1])
    assert result.exit_code == 0, result.output
    assert "6 samples in" in result.stdout
    assert "training on 4, validating on 1, 1 held out for testing" in result.stdout
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("run finished after 1 of 1 epochs: best validation Dice ")
    assert summary.endswith(f"its weights are in {tmp_path / 'run' / 'best.keras'}")


def test_one_epoch_curves_have_whole_number_ticks():
    figure = curves_figure([{"epoch": 1, "loss": 0.9, "val_loss": 0.8, "dice": 0.1}])
    for axis in figure.axes:
        assert list(axis.get_xticks()) == [1.0]


# 10. Undefined HD95s are counted in the table.
def test_the_table_counts_images_without_an_hd95():
    summary = {"n_images": 6, "dice_mean": 0.6, "dice_pooled": 0.7, "iou_mean": 0.5}
    summary |= {"hd95_mean": 3.0, "hd95_nan": 2}
    table = format_table({**summary, "resolution": "original"})
    assert table.splitlines()[0].split()[-1] == "n/a"
    assert table.splitlines()[1].split()[-1] == "2"


# 11. Smaller messages.
def test_a_misspelt_builder_argument_is_named_alone(tmp_path):
    args = ("train", "--data", sample_dir(), "--out", tmp_path / "r", "--model-config")
    result = invoke(*args, "base_filter=16")
    one_line_error(result, "does not take base_filter;")
    assert "input_shape" not in result.stderr.split(";")[0]


def test_predict_on_a_data_set_root_points_to_its_images(tmp_path):
    result = invoke("predict", "--model", "resunet.figshare", sample_dir(), "--out", tmp_path)
    one_line_error(result, f"{sample_dir() / 'images'} holds images")


def test_inspect_on_the_parent_of_a_data_set_points_to_it(tmp_path):
    shutil.copytree(sample_dir(), tmp_path / "download" / "figshare")
    result = invoke("data", "inspect", tmp_path / "download")
    one_line_error(result, f"{tmp_path / 'download' / 'figshare'} holds data in the 'folders'")


def test_models_says_when_nothing_matches():
    one_line_error(invoke("models", "zzz"), "no registered model matches 'zzz'", "resunet")
    assert "resunet" in invoke("models", "res*").stdout


# 12. A mistyped path is answered before the deep-learning backend is imported.
def test_a_mistyped_path_is_answered_before_keras_is_imported(tmp_path):
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from segkit.cli import cli\n"
        "for args in (['train', '--data', 'nosuch', '--out', 'r'],\n"
        "             ['predict', '--model', 'resunet.figshare', 'nosuch.png', '--out', 'o'],\n"
        "             ['evaluate', '--model', 'run/', '--data', 'nosuch']):\n"
        "    result = CliRunner().invoke(cli, args)\n"
        "    print(result.exit_code, result.stderr.strip())\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'keras', 'tensorflow', 'torch',"
        " 'jax'}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "2 segkit: error: --data: nosuch does not exist"
    assert lines[1] == "2 segkit: error: input: nosuch.png does not exist"
    assert lines[2] == "2 segkit: error: --data: nosuch does not exist"
    assert lines[3] == "[]"


# 13. Options the API had and the command line lacked.
def test_channels_and_limit_reach_the_run(tmp_path, manifest):
    args = ("train", "--data", sample_dir(), "--out", tmp_path / "run", "--epochs", 1)
    args += ("--manifest", manifest, "--cache", tmp_path / "c", *TINY[:-1])
    result = invoke(*args, "--channels", "3", "--limit", 2)
    assert result.exit_code == 0, result.output
    assert "training on 2," in result.stdout
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["channels"] == 3 and config["limit"] == 2
    assert RunFolder(tmp_path / "run").load_best().input_shape[-1] == 3


# 15. Inputs unlike the training data are pointed out.
def test_inputs_unlike_the_training_images_are_pointed_out(tmp_path, lgg_root):
    flair = lgg_root / "TCGA_FG_8189_20030516" / "TCGA_FG_8189_20030516_6.tif"
    with pytest.warns(UserWarning, match=r"1 of 1 inputs look unlike .*resunet\.figshare.*std"):
        predict("resunet.figshare", [flair], tmp_path / "lgg")
    # Only the check's own warning counts: another library's warning must not fail this test.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict("resunet.figshare", [sample_dir() / "images"], tmp_path / "figshare")
    assert not [str(w.message) for w in caught if "look unlike" in str(w.message)]


def test_the_intensity_range_reads_three_numbers_of_an_image(figshare_256, lgg_root):
    from segkit import data

    samples = data.find_samples(figshare_256)[:200:4]
    trained = IntensityRange.measure(data.decode(s, data.Preprocessing())[0] for s in samples)
    assert trained.images == 50
    dark = np.zeros((256, 256, 1), np.uint8)
    assert trained.outside(dark).startswith("mean 0.000, trained on ")
    inside = data.decode(samples[10], data.Preprocessing())[0]
    assert trained.outside(inside) is None
    assert IntensityRange.from_dict(trained.to_dict()) == trained
    # A handful of images gives a range too narrow to judge by: it never warns.
    few = IntensityRange.measure(data.decode(s, data.Preprocessing())[0] for s in samples[:5])
    assert few.outside(dark) is None


def test_a_run_records_the_intensity_of_its_training_images(tmp_path, manifest):
    args = ("train", "--data", sample_dir(), "--out", tmp_path / "run", "--epochs", 1)
    result = invoke(*args, "--manifest", manifest, "--cache", tmp_path / "c", *TINY)
    assert result.exit_code == 0, result.output
    recorded = RunFolder(tmp_path / "run").intensity()
    assert recorded.images == 4 and recorded.low[0] < recorded.high[0]


def test_export_shows_no_stray_numpy_warning(tmp_path):
    import keras

    import segkit

    if keras.backend.backend() == "jax":
        pytest.skip("ONNX export runs on tensorflow and torch")
    tiny = segkit.models.get("unet", input_shape=(32, 32, 1), base_filters=4, depth=2)
    tiny.save(tmp_path / "tiny.keras")
    # The warning comes from importing the exporter, once per process: a fresh one shows it.
    command = [
        sys.executable,
        "-m",
        "segkit.cli",
        "export",
        "--model",
        str(tmp_path / "tiny.keras"),
    ]
    command += ["--out", str(tmp_path / "tiny.onnx")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "np.object" not in result.stderr
