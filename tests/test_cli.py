"""The command line, tried as a new user would: help, errors, and the whole workflow."""

from __future__ import annotations

import json
import shutil

import click
import pytest
from click.testing import CliRunner

from segkit.cli import cli, parse_pairs
from segkit.demo import sample_dir


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


def test_help_lists_every_command(run):
    result = run("--help")
    assert result.exit_code == 0
    for command in ("train", "evaluate", "predict", "export", "demo", "data", "models", "info"):
        assert command in result.output
    for command in ("train", "evaluate", "predict", "export", "demo", "models", "info"):
        assert run(command, "--help").exit_code == 0
    assert run("data", "inspect", "--help").exit_code == 0


def test_models_lists_the_notebook_networks(run):
    result = run("models")
    assert result.exit_code == 0
    assert "unet " in result.output and "resunet " in result.output


def test_info_names_the_backend(run, backend):
    result = run("info")
    assert result.exit_code == 0 and backend in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("predict", "--model", "unett", sample_dir() / "images" / "955.png", "--out", "o"),
            "unknown model 'unett'",
        ),
        (("predict", "--model", "resunet.figshare", "x.png", "--out", "o"), "x.png"),
        (("evaluate", "--model", "unet", "--data", "/no/such/folder"), "/no/such/folder"),
        (("predict", "--model", "missing.keras", "x.png", "--out", "o"), "missing.keras"),
        (("train", "--model", "unet", "--data", "/no/such", "--out", "r"), "/no/such"),
        (("train", "--resume", "/no/run"), "holds no run"),
        (
            (
                "train",
                "--model",
                "unet",
                "--data",
                sample_dir(),
                "--out",
                "run",
                "--image-size",
                30,
            ),
            "height 30 must be a positive multiple of 16",
        ),
        (("evaluate", "--model", "corrupt.keras", "--data", sample_dir()), "corrupt.keras"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(run, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corrupt.keras").write_bytes(b"not a model")
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_debug_shows_the_traceback(tmp_path):
    result = CliRunner().invoke(cli, ["--debug", "train", "--resume", str(tmp_path)])
    assert isinstance(result.exception, FileNotFoundError)


def test_data_inspect_reports_and_fails_on_problems(run, tmp_path):
    result = run("data", "inspect", sample_dir(), "--json")
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert report["n_pairs"] == 6 and report["problems"] == []
    broken = tmp_path / "broken"
    shutil.copytree(sample_dir(), broken)
    (broken / "masks" / "955_mask.png").unlink()
    result = run("data", "inspect", broken)
    assert result.exit_code == 2 and "955" in result.output


@pytest.mark.backend
def test_train_resume_evaluate_predict_export(run, tmp_path):
    """The notebook's workflow end to end on the bundled slices, at a tiny size."""
    from segkit import data

    keys = [s.key for s in data.find_samples(sample_dir())]
    data.Split(
        method="random",
        seed=0,
        fractions=(0.5, 0.25, 0.25),
        train=tuple(keys[:4]),
        val=tuple(keys[4:5]),
        test=tuple(keys[5:]),
    ).save(tmp_path / "split.json")
    out = tmp_path / "run"
    common = (
        "--data",
        sample_dir(),
        "--image-size",
        32,
        "--batch-size",
        2,
        "--quiet",
        "--manifest",
        tmp_path / "split.json",
        "--model-config",
        "base_filters=4",
        "--model-config",
        "depth=2",
    )
    tversky = ("--loss", "tversky", "--loss-arg", "alpha=0.3", "--loss-arg", "beta=0.7")
    result = run("train", "--out", out, "--epochs", 1, *tversky, *common)
    assert result.exit_code == 0, result.output
    recorded = json.loads((out / "config.json").read_text())["config"]
    assert recorded["loss"] == "tversky" and recorded["loss_args"] == {"alpha": 0.3, "beta": 0.7}
    # Ask for one more epoch by editing the run's config, then resume it.
    config = json.loads((out / "config.json").read_text())
    config["config"]["epochs"] = 2
    (out / "config.json").write_text(json.dumps(config))
    assert run("train", "--resume", out).exit_code == 0
    assert len((out / "log.csv").read_text().splitlines()) == 3

    report_path = tmp_path / "report.json"
    result = run(
        "evaluate",
        "--model",
        out,
        "--data",
        sample_dir(),
        "--out",
        report_path,
        "--manifest",
        out / "split.json",
        "--subset",
        "test",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(report_path.read_text())["n_images"] == 1 and "dice" in result.output

    result = run(
        "predict",
        "--model",
        out,
        sample_dir() / "images",
        "--out",
        tmp_path / "pred",
        "--overlays",
        "--true-masks",
        sample_dir() / "masks",
    )
    assert result.exit_code == 0 and "6 masks written" in result.output
    assert len(list((tmp_path / "pred").glob("*_overlay.png"))) == 6
    result = run("evaluate", "--predictions", tmp_path / "pred", "--data", sample_dir())
    assert result.exit_code == 0, result.output

    import keras

    if keras.backend.backend() != "jax":
        result = run("export", "--model", out, "--out", tmp_path / "model.onnx")
        assert result.exit_code == 0, result.output
        result = run(
            "predict",
            "--model",
            tmp_path / "model.onnx",
            sample_dir() / "images",
            "--out",
            tmp_path / "onnx",
        )
        assert result.exit_code == 0 and "6 masks written" in result.output


def test_train_options_are_generated_from_train_config():
    """TrainConfig is the one source of the train options: names, defaults and choices."""
    from dataclasses import MISSING, fields

    from segkit.runs import TrainConfig

    options = {p.name: p for p in cli.commands["train"].params}
    for spec in fields(TrainConfig):
        if spec.metadata.get("hidden"):
            assert spec.name not in options
            continue
        option = options[spec.name]
        default = spec.default if spec.default is not MISSING else spec.default_factory()
        if spec.name == "image_size":
            assert option.default == default[0]
        elif spec.name == "channels":
            assert option.default == str(default)
        elif spec.name == "data":
            assert option.default is None
        elif isinstance(default, dict):
            assert option.multiple
        else:
            assert option.default == default, spec.name
        if "choices" in spec.metadata:
            assert tuple(option.type.choices) == tuple(spec.metadata["choices"])
    assert "--lr" in options["learning_rate"].opts
    assert "--loss-arg" in options["loss_args"].opts


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([], {}),
        (["alpha=0.3", "beta=0.7"], {"alpha": 0.3, "beta": 0.7}),
        (["per_image=true", "from_logits=False"], {"per_image": True, "from_logits": False}),
        (["class_weights=[0, 1, 2]", "alpha=null"], {"class_weights": [0, 1, 2], "alpha": None}),
        (["reduction=sum", "name=a=b"], {"reduction": "sum", "name": "a=b"}),
        (['name="0.3"', "smooth="], {"name": "0.3", "smooth": ""}),
    ],
)
def test_key_value_options_are_parsed_as_json_then_python_then_text(pairs, expected):
    assert parse_pairs(pairs, "--loss-arg") == expected


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["alpha"], "'alpha' is not KEY=VALUE"),
        (["=0.3"], "'=0.3' is not KEY=VALUE"),
        (["alpha=0.3", "alpha=0.4"], "'alpha' is given twice"),
    ],
)
def test_bad_key_value_options_are_named(pairs, message):
    with pytest.raises(click.BadParameter, match=message):
        parse_pairs(pairs, "--loss-arg")
