"""The ``segkit`` command line: a thin click layer over the Python API.

Errors a user can fix (a missing file, an unknown model, bad input) print one line and exit
with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import warnings
from dataclasses import MISSING, fields
from pathlib import Path

import click

# OSError covers missing files, folders and permissions; ImportError a missing optional extra.
USER_ERRORS = (ValueError, KeyError, OSError, ImportError)


class _Group(click.Group):
    """Turns user errors into one clear line and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            if ctx.find_root().params.get("debug"):
                raise
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            click.echo(f"segkit: error: {message}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="segkit")
def cli(debug: bool) -> None:
    """segkit: medical image segmentation on Keras 3."""


@cli.command()
def info() -> None:
    """Print segkit, Keras and backend versions and the devices in use."""
    from segkit.environment import describe_environment

    for key, value in describe_environment().items():
        click.echo(f"{key:>16}: {value}")


@cli.command()
@click.argument("pattern", default="*")
def models(pattern: str) -> None:
    """List registered architectures (optionally matching a wildcard PATTERN)."""
    import segkit
    from segkit.models import pretrained

    for name in segkit.models.list(pattern):
        tags = ", ".join(segkit.models.split_name(t)[1] for t in pretrained.available(name))
        suffix = f"  [weights: {tags}]" if tags else ""
        click.echo(f"{name:<18} {segkit.models.describe(name)}{suffix}")


_threshold_option = click.option(
    "--threshold",
    default=None,
    type=float,
    help="Foreground above this probability [default: the model's own, 0.5 unless its weights "
    "say otherwise].",
)


def _model_options(function):
    """--model and --weights, shared by the commands that run a model."""
    function = click.option(
        "--weights", default=None, help="Shipped weights tag when --model is a registry name."
    )(function)
    return click.option(
        "--model",
        "model",
        required=True,
        help="Run folder, .keras file, .onnx file, or registry name (with --weights).",
    )(function)


def train_options(function):
    """``segkit train``'s options, one per field of `segkit.runs.TrainConfig`: the config is the
    one source of their names, defaults, choices and help."""
    from typing import get_type_hints

    from segkit.runs import TrainConfig

    types = get_type_hints(TrainConfig)
    for spec in reversed(fields(TrainConfig)):
        meta = spec.metadata
        if meta.get("hidden"):
            continue
        name = spec.name.replace("_", "-")
        flag = meta.get("flag", f"--{name}")
        default = spec.default if spec.default is not MISSING else spec.default_factory()
        kind = types[spec.name]
        options: dict = {"help": meta["help"], "metavar": meta.get("metavar")}
        if spec.name == "data":
            options.update(default=None, type=click.Path())
        elif kind is dict:
            options.update(multiple=True)
        elif kind is bool:
            flag = f"--{name}/--no-{name}"
            options.update(default=default, show_default=True)
        elif spec.name == "image_size":
            options.update(default=default[0], type=int, show_default=True)
        else:
            value_type = {int | None: int, str | None: click.Path()}.get(kind, kind)
            if "choices" in meta:
                value_type = click.Choice(meta["choices"])
                options.pop("metavar")
            options.update(default=default, type=value_type, show_default=default is not None)
        function = click.option(flag, spec.name, **options)(function)
    return function


@cli.command()
@click.option("--out", type=click.Path(), help="Run folder to create.")
@click.option("--resume", "resume_dir", type=click.Path(), help="Continue the run in this folder.")
@train_options
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(resume_dir, out, quiet, **settings):
    """Train a model; writes checkpoints, log.csv, curves.png and config.json to --out."""
    from segkit import training

    if resume_dir:
        training.resume(resume_dir, quiet=quiet)
        click.echo(f"resumed and finished: {resume_dir}")
        return
    if not settings["data"] or not out:
        raise click.UsageError("--data and --out are required (or --resume RUN_DIR)")
    settings = parse_train_settings(settings)
    training.train(settings.pop("model"), settings.pop("data"), out, quiet=quiet, **settings)
    click.echo(f"run written to {out}")


def parse_train_settings(options: dict) -> dict:
    """The values of `train_options` as `segkit.train` settings (square size, parsed pairs)."""
    settings = dict(options)
    side = settings.pop("image_size")
    settings["image_size"] = (side, side)
    for name in ("model_config", "loss_args"):
        flag = _field_flag(name)
        settings[name] = parse_pairs(settings[name], flag)
    return settings


def _field_flag(name: str) -> str:
    from segkit.runs import TrainConfig

    spec = TrainConfig.__dataclass_fields__[name]
    return spec.metadata.get("flag", f"--{name.replace('_', '-')}")


def parse_pairs(pairs, option: str) -> dict:
    """``KEY=VALUE`` strings (``--model-config``, ``--loss-arg``) as a dict.

    A value is read as JSON (``0.3``, ``true``, ``[0, 1, 1]``), else as a Python literal
    (``True``, ``None``), else kept as text: ``["alpha=0.3", "reduction=sum"]`` gives
    ``{"alpha": 0.3, "reduction": "sum"}``.

    Raises:
        click.BadParameter: a pair without ``=``, with an empty key, or a key given twice.
    """
    parsed = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        key = key.strip()
        if not equals or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=option)
        if key in parsed:
            raise click.BadParameter(f"{key!r} is given twice", param_hint=option)
        parsed[key] = _parse_value(text)
    return parsed


def _parse_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


@cli.command()
@click.option("--model", "model", default=None, help="Run folder, .keras, .onnx or registry name.")
@click.option("--weights", default=None, help="Shipped weights tag when --model is a name.")
@click.option("--predictions", type=click.Path(), help="Score these mask files instead of a model.")
@click.option("--data", "data_dir", required=True, type=click.Path(), help="Data with true masks.")
@click.option("--out", type=click.Path(), help="Write the JSON report here.")
@click.option("--layout", default="auto", show_default=True)
@click.option("--manifest", type=click.Path(), help="Split manifest (a run's split.json).")
@click.option("--subset", type=click.Choice(["train", "val", "test"]), help="Part of --manifest.")
@click.option("--at-model-size", is_flag=True, help="Score at the model's size, not the truth's.")
@_threshold_option
def evaluate(model, weights, predictions, data_dir, out, **options):
    """Score a model, or predicted masks, against true masks; print a table."""
    from segkit.reports import evaluate as run_evaluation
    from segkit.reports import format_table

    if model is None and predictions is None:
        raise click.UsageError("give --model or --predictions")
    report = run_evaluation(
        model, data_dir, out, weights=weights, predictions=predictions, **options
    )
    click.echo(format_table(report))
    if out:
        click.echo(f"report written to {out}")


@cli.command()
@_model_options
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Output folder.")
@_threshold_option
@click.option("--batch-size", default=8, show_default=True, type=int)
@click.option("--probabilities", is_flag=True, help="Also write probability maps.")
@click.option("--overlays", is_flag=True, help="Also write overlay pictures.")
@click.option("--true-masks", type=click.Path(), help="Folder of true masks for the overlays.")
def predict(model, weights, inputs, out, **options):
    """Segment image files or folders; writes <name>_mask.png per image."""
    from segkit.inference import predict as run_prediction

    written = run_prediction(model, inputs, out, weights=weights, **options)
    click.echo(f"{len(written)} masks written to {out}")


@cli.command()
@_model_options
@click.option("--format", "fmt", type=click.Choice(["onnx", "tf_saved_model"]), default="onnx")
@click.option("--out", required=True, type=click.Path(), help="Output file or folder.")
def export(model, weights, fmt, out):
    """Export a model to ONNX or a TensorFlow SavedModel."""
    from segkit.exporting import export as run_export

    click.echo(f"exported to {run_export(model, out, format=fmt, weights=weights)}")


@cli.command()
@click.option("--out", default="segkit-demo", show_default=True, type=click.Path())
@click.option("--model", default=None, help="Registered model (default: one with shipped weights).")
def demo(out, model):
    """Segment the bundled MRI sample slices and report Dice."""
    from segkit.demo import run_demo

    report = run_demo(out, model)
    click.echo(f"model: {report['model']}")
    click.echo(report["table"])
    if "note" in report:
        click.echo(f"note: {report['note']}")
    click.echo(f"overlays, masks and report.json written to {Path(out).resolve()}")


@cli.group()
def data():
    """Look at data folders before training on them."""


@data.command()
@click.argument("root", type=click.Path())
@click.option("--layout", default="auto", show_default=True, help="folders, figshare-mat or lgg.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
def inspect(root, layout, as_json):
    """Count pairs and patients, sizes and coverage; list every problem (exit 2 if any)."""
    from segkit import data as segkit_data

    report = segkit_data.inspect(root, layout=layout)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format())
    if not report.ok:
        sys.exit(2)


def main() -> None:
    """Entry point of the ``segkit`` console script."""
    # TensorFlow's C++ start-up chatter buries the output of a short command.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Warnings for people, not tracebacks: "segkit: warning: ...".
    warnings.formatwarning = lambda message, *args, **kwargs: f"segkit: warning: {message}\n"
    cli(prog_name="segkit")


if __name__ == "__main__":
    main()
