"""The ``segkit`` command line: a thin click layer over the Python API.

Errors a user can fix (a missing file, an unknown model, bad input, a missing or mistyped
option) print one line and exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import ast
import json
import sys
import warnings
from dataclasses import MISSING, fields
from pathlib import Path

import click

# OSError covers missing files, folders and permissions; ImportError a missing optional extra.
USER_ERRORS = (ValueError, KeyError, OSError, ImportError)


class _Group(click.Group):
    """Turns user errors into one clear line and exit status 2: a command's own (a missing
    file, bad input) and click's (a missing or mistyped option), which click would otherwise
    show under the command's usage block."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            if ctx.find_root().params.get("debug"):
                raise
            where = exc.ctx.command_path if exc.ctx else ctx.command_path
            click.echo(f"segkit: error: {exc.format_message()} (see {where} --help)", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("segkit: interrupted", err=True)
            sys.exit(130)  # the shell's code for a job stopped by Ctrl-C
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

    names = segkit.models.list(pattern)
    if not names:
        raise ValueError(
            f"no registered model matches {pattern!r}; "
            f"registered: {', '.join(segkit.models.list())}"
        )
    for name in names:
        tags = ", ".join(segkit.models.split_name(t)[1] for t in pretrained.available(name))
        suffix = f"  [weights: {tags}]" if tags else ""
        click.echo(f"{name:<18} {segkit.models.describe(name)}{suffix}")


@cli.command()
@click.argument("pattern", default="*")
@click.option(
    "--details",
    is_flag=True,
    help="Build each encoder on a 64x64 probe to show its strides, channels and parameters "
    "(seconds per keras.applications family).",
)
def encoders(pattern: str, details: bool) -> None:
    """List registered encoders (optionally matching a wildcard PATTERN): 3-D support and the
    weights they can start from offline."""
    import segkit

    names = segkit.encoders.list(pattern)
    if not names:
        raise ValueError(
            f"no registered encoder matches {pattern!r}; registered: "
            f"{', '.join(segkit.encoders.list())}"
        )
    for name in names:
        dims = "2-D, 3-D" if segkit.encoders.supports_3d(name) else "2-D"
        line = f"{name:<18} {dims:<9} {segkit.encoders.describe_weights(name)}"
        if details:
            line += f"  {segkit.encoders.summary(name)}"
        click.echo(line)


def inference_options(*names: str):
    """``--threshold``, ``--tta`` and ``--postprocess`` (or those of ``names``), one per field of
    `segkit.inference.InferenceSettings` (the one source of their names, choices and help),
    and ``--no-defaults``. Each defaults to the model's stored setting; the command gets
    ``defaults`` and the settings given (None: not given)."""
    from segkit.inference import InferenceSettings

    def decorate(function):
        function = click.option(
            "--no-defaults",
            "defaults",
            flag_value=False,
            default=True,
            help="Ignore the model's stored inference defaults: threshold 0.5, no TTA, no "
            "post-processing, unless given.",
        )(function)
        for spec in reversed(fields(InferenceSettings)):
            if names and spec.name not in names:
                continue
            meta = spec.metadata
            kind = click.Choice(meta["choices"]) if "choices" in meta else str
            if spec.type in (float, "float"):
                kind = float
            function = click.option(
                f"--{spec.name}",
                spec.name,
                default=None,
                type=kind,
                metavar=meta.get("metavar"),
                help=f"{meta['help']} [default: the model's own; {spec.default} without]",
            )(function)
        return function

    return decorate


_random_weights_option = click.option(
    "--random-weights",
    is_flag=True,
    help="Allow a bare model name: an untrained network, whose masks mean nothing.",
)


def _check_paths(*named: tuple[str, str | None]) -> None:
    """Fail at once, before the backend is imported, on a path that does not exist.

    A ``--model`` that is a registry name (`segkit.inference.names_a_path`) is not a path.
    """
    from segkit.inference import names_a_path  # imports no deep-learning backend

    for option, value in named:
        if value is None or (option == "--model" and not names_a_path(value)):
            continue
        if not Path(value).exists():
            raise FileNotFoundError(f"{option}: {value} does not exist")


_precision_option = click.option(
    "--precision",
    type=click.Choice(["float32", "bfloat16"]),
    default="float32",
    show_default=True,
    help="What a Keras model computes in: bfloat16 is faster on CPUs with AVX-512 BF16 or AMX "
    "and refused on others.",
)


def _engine_options(function):
    """--engine and the Ray cluster's options; the command gets ``engine`` and ``ray``."""
    options = [
        click.option(
            "--engine",
            type=click.Choice(["local", "ray"]),
            default="local",
            show_default=True,
            help="Where the work runs: here, or on a Ray cluster (pip install 'segkit[ray]').",
        ),
        click.option(
            "--address",
            default=None,
            help="Ray: the cluster to join, auto or HOST:PORT [default: a local Ray runtime].",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=1),
            default=None,
            help="Ray: workers, each loading the model once [default: one per CPU].",
        ),
        click.option(
            "--cpus-per-worker",
            type=click.FloatRange(min=0, min_open=True),
            default=1.0,
            show_default=True,
            help="Ray: CPUs reserved for each worker.",
        ),
        click.option(
            "--gpus-per-worker",
            type=click.FloatRange(min=0),
            default=0.0,
            show_default=True,
            help="Ray: GPUs reserved for each worker.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _ray_options(options: dict):
    """Pop the engine's options: the engine, and its `segkit.ray_engine.RayOptions` (None for
    the local engine, which refuses them). Fails at once when Ray is missing."""
    engine = options.pop("engine")
    cluster = {k: options.pop(k) for k in ("address", "workers")}
    sizes = {k: options.pop(k) for k in ("cpus_per_worker", "gpus_per_worker")}
    if engine == "local":
        given = [k for k, v in cluster.items() if v is not None]
        given += [k for k, v in sizes.items() if v != (1.0 if k.startswith("cpus") else 0.0)]
        if given:
            raise click.UsageError(f"--{given[0].replace('_', '-')} is for --engine ray")
        return engine, None
    from segkit.ray_engine import RayOptions, require_ray

    require_ray()
    return engine, RayOptions(**cluster, **sizes)


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
        elif spec.name == "channels":
            options.update(default=str(default), show_default=True)
        else:
            optional = {int | None: int, float | None: float, str | None: click.Path()}
            value_type = {**optional, int | str: str}.get(kind, kind)
            if "choices" in meta:
                value_type = click.Choice(meta["choices"])
                options.pop("metavar")
            options.update(default=default, type=value_type, show_default=default is not None)
        function = click.option(flag, spec.name, **options)(function)
    return function


@cli.command()
@click.option("--out", type=click.Path(), help="Run folder to create.")
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(),
    help="Continue the run in this folder (with --epochs: train it longer).",
)
@train_options
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def train(ctx, resume_dir, out, quiet, **settings):
    """Train a model; writes checkpoints, log.csv, curves.png and config.json to --out."""
    given = [
        name
        for name in settings
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    ]
    if resume_dir:
        from segkit.runs import PLACEMENT_FIELDS  # where to train may change on resume

        placement = {name: settings[name] for name in given if name in PLACEMENT_FIELDS}
        refused = [
            _field_flag(name) for name in given if name != "epochs" and name not in placement
        ]
        if out or refused:
            raise ValueError(
                "--resume continues a run with the settings it was started with; it does not "
                f"take {', '.join(refused + (['--out'] if out else []))} (start a new run "
                f"with --init-from {resume_dir} to change them)"
            )
        run_dir = Path(resume_dir)
        epochs = settings["epochs"] if "epochs" in given else None
    else:
        if not settings["data"] or not out:
            raise click.UsageError("--data and --out are required (or --resume RUN_DIR)")
        _check_paths(("--data", settings["data"]), ("--init-from", settings["init_from"]))
        run_dir = Path(out)
        settings = parse_train_settings(settings)

    from segkit import training

    try:
        if resume_dir:
            training.resume(run_dir, epochs=epochs, quiet=quiet, **placement)
        else:
            training.train(
                settings.pop("model"), settings.pop("data"), run_dir, quiet=quiet, **settings
            )
    except KeyboardInterrupt:
        click.echo(
            f"segkit: interrupted; every finished epoch is saved in {run_dir}: "
            f"resume with `segkit train --resume {run_dir}`",
            err=True,
        )
        sys.exit(130)
    click.echo(_run_summary(run_dir))


def _run_summary(run_dir: Path) -> str:
    from segkit.runs import RunFolder

    run = RunFolder(run_dir)
    state, config = run.state(), run.config()
    ended = "stopped early" if state.epoch < config.epochs else "finished"
    return (
        f"run {ended} after {state.epoch} of {config.epochs} epochs: best validation Dice "
        f"{state.best_dice:.3f} at epoch {state.best_epoch}; its weights are in "
        f"{run.best_checkpoint}"
    )


def parse_train_settings(options: dict) -> dict:
    """The values of `train_options` as `segkit.train` settings (square size, parsed pairs)."""
    settings = dict(options)
    side = settings.pop("image_size")
    settings["image_size"] = (side, side)
    settings["channels"] = _parse_channels(settings["channels"])
    for name in ("model_config", "loss_args"):
        flag = _field_flag(name)
        settings[name] = parse_pairs(settings[name], flag)
    return settings


def _parse_channels(text: str) -> int | tuple:
    """``"1"`` or ``"3"`` as a count; ``"flair,post-contrast"`` or ``"0,2"`` as a selection."""
    if text.strip() in ("1", "3"):
        return int(text)
    return tuple(int(c) if c.strip().isdigit() else c.strip() for c in text.split(","))


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


def _class_options(function):
    """--num-classes and --classes: read masks as label maps."""
    function = click.option(
        "--classes",
        default=None,
        metavar="tumour-type",
        help="tumour-type: each mask's foreground takes its sample's label (labels.csv, .mat).",
    )(function)
    return click.option(
        "--num-classes",
        type=click.IntRange(min=1),
        default=None,
        help="Read masks as label maps of this many classes (a classes.json does so too).",
    )(function)


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
@inference_options()
@click.option("--batch-size", default=8, show_default=True, type=int, help="Images per pass.")
@click.option(
    "--on-problem",
    type=click.Choice(["error", "skip"]),
    default="error",
    show_default=True,
    help="Images without a mask and other data problems: stop, or leave those files out.",
)
@_random_weights_option
@_precision_option
@_class_options
@click.option(
    "--regions",
    default=None,
    metavar="REGIONS",
    help='Score these regions of the label maps instead of the classes, e.g. "tumour=1,2,3;'
    'glioma=2" (a run trained on regions says so itself).',
)
@click.option(
    "--ignore-index",
    type=click.IntRange(0, 255),
    default=None,
    help="A value of the true label maps, e.g. 255, whose pixels are not scored.",
)
@_engine_options
@click.option(
    "--html",
    type=click.Path(),
    help="Also write a page to look at: summary, distributions, the cases worst first.",
)
@click.option(
    "--assets",
    type=click.Path(),
    help="Write a picture of each case here (named in the report), linked from the --html page "
    "instead of embedded.",
)
@click.option("--quiet", is_flag=True, help="No progress output.")
def evaluate(model, weights, predictions, data_dir, out, quiet, defaults, html, assets, **options):
    """Score a model, or predicted masks, against true masks; print a table."""
    if model is None and predictions is None:
        raise click.UsageError("give --model or --predictions")
    options["engine"], options["ray"] = _ray_options(options)
    settings = {k: options.pop(k) for k in ("threshold", "tta", "postprocess")}
    if predictions is not None and (not defaults or any(v is not None for v in settings.values())):
        given = [f"--{k}" for k, v in settings.items() if v is not None]
        raise click.UsageError(
            f"{', '.join(given or ['--no-defaults'])} is for --model: --predictions are masks"
        )
    _check_paths(("--data", data_dir), ("--model", model), ("--predictions", predictions))
    from segkit.reports import evaluate as run_evaluation
    from segkit.reports import format_table

    if model is not None:
        from segkit.inference import load_model

        model = load_model(
            model,
            weights,
            random_weights=options["random_weights"],
            precision=options["precision"],
            defaults=defaults,
            **settings,
        )

    thumbnails = None
    if html or assets:  # drawn while the masks are in memory; kept there without --assets
        from segkit.gallery import Thumbnails

        thumbnails = Thumbnails(assets)
    report = run_evaluation(
        model,
        data_dir,
        out,
        weights=weights,
        predictions=predictions,
        progress=not quiet,
        thumbnails=thumbnails,
        **options,
    )
    click.echo(format_table(report))
    if out:
        click.echo(f"report written to {out}")
    if html:
        from segkit.report_page import write_page

        write_page(report, html, assets=assets, thumbnails=thumbnails)
        click.echo(f"page written to {html}")


@cli.command()
@click.argument("source", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="The HTML page to write.")
@click.option(
    "--assets",
    type=click.Path(),
    help="Write the case pictures here, linked from the page instead of embedded.",
)
def report(source, out, assets):
    """Write one self-contained HTML page of an evaluation report (the JSON of `segkit evaluate
    --out`) or of a training run folder (curves, config, and a test-split report inside it)."""
    _check_paths(("SOURCE", source))
    from segkit.report_page import write_page

    write_page(source, out, assets=assets)
    click.echo(f"page written to {out}")


@cli.command()
@_model_options
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Output folder.")
@inference_options()
@click.option("--batch-size", default=8, show_default=True, type=int)
@click.option("--probabilities", is_flag=True, help="Also write probability maps.")
@click.option("--overlays", is_flag=True, help="Also write overlay pictures.")
@click.option("--true-masks", type=click.Path(), help="Folder of true masks for the overlays.")
@_random_weights_option
@_precision_option
@click.option(
    "--axis",
    type=click.IntRange(0, 2),
    help="Volumes: the voxel axis to segment slices along [default: the axial axis].",
)
@_engine_options
@click.option(
    "--overwrite",
    is_flag=True,
    help="Ray: redo outputs that exist complete [default: skip them; local always writes].",
)
@click.option("--quiet", is_flag=True, help="No progress output.")
def predict(model, weights, inputs, out, quiet, axis, **options):
    """Segment image files or folders, or volumes (NIfTI files, DICOM series folders, folders
    of NIfTI files); writes <name>_mask.png per image, <name>_mask.nii.gz per volume.

    --engine ray spreads the files over the workers of a Ray cluster, skips those whose
    outputs exist complete and writes each file's status and time to ray-summary.json."""
    options["engine"], options["ray"] = _ray_options(options)
    _check_paths(("--model", model), *(("input", i) for i in inputs))
    from segkit.data.volumes import is_volume_input

    if any(is_volume_input(i) for i in inputs):
        _predict_volumes(model, weights, inputs, out, quiet, axis, options)
        return
    if axis is not None:
        raise click.UsageError("--axis is for volumes (NIfTI files, DICOM series folders)")
    from segkit.inference import predict as run_prediction

    written = run_prediction(model, inputs, out, weights=weights, progress=not quiet, **options)
    click.echo(f"{_count(len(written), 'mask')} written to {out}")
    _say_summary(options["engine"], out)


def _count(number: int, thing: str) -> str:
    """``"1 mask"``, ``"6 masks"``."""
    return f"{number} {thing}{'' if number == 1 else 's'}"


def _predict_volumes(model, weights, inputs, out, quiet, axis, options) -> None:
    """`segkit predict` on volumes: a NIfTI label map per volume (`segkit.volumes`)."""
    from segkit.data.volumes import is_volume_input
    from segkit.volumes import predict_volumes

    images = [i for i in inputs if not is_volume_input(i)]
    if images:
        raise click.UsageError(f"give volumes or images, not both: {images[0]} is not a volume")
    for option in ("probabilities", "true_masks"):
        if options.get(option):
            raise click.UsageError(f"--{option.replace('_', '-')} is for images, not volumes")
    written = predict_volumes(
        model,
        inputs,
        out,
        weights=weights,
        axis=axis,
        threshold=options["threshold"],
        tta=options["tta"],
        postprocess=options["postprocess"],
        defaults=options["defaults"],
        batch_size=options["batch_size"],
        overlays=options["overlays"],
        random_weights=options["random_weights"],
        precision=options["precision"],
        progress=not quiet,
        engine=options["engine"],
        ray=options["ray"],
        overwrite=options["overwrite"],
    )
    click.echo(f"{_count(len(written), 'volume mask')} written to {out}")
    _say_summary(options["engine"], out)


def _say_summary(engine: str, out: str) -> None:
    if engine == "ray":
        from segkit.ray_engine import SUMMARY_FILE

        click.echo(f"each file's status and time: {Path(out) / SUMMARY_FILE}")


@cli.command()
@_model_options
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Output folder.")
@click.option(
    "--method",
    type=click.Choice(["gradient", "smoothgrad", "gradcam", "occlusion"]),
    default="gradient",
    show_default=True,
    help="How to find the pixels that drive the prediction (.onnx models: occlusion only).",
)
@click.option("--layer", help="Layer Grad-CAM reads [default: the one feeding the output head].")
@click.option("--region", type=click.Path(), help="Explain the prediction inside this mask file.")
@click.option("--class", "label", type=int, help="Explain this class (1 for a one-channel model).")
@click.option("--raw", is_flag=True, help="Also write <name>_saliency.npy, the map itself.")
@inference_options("threshold")
@click.option("--batch-size", default=8, show_default=True, type=int)
@click.option("--quiet", is_flag=True, help="No progress output.")
def explain(model, weights, inputs, out, region, label, quiet, **options):
    """Saliency maps of what drives the prediction; writes <name>_saliency.png per image.

    A map explains one pass of the network (no TTA, no post-processing) and outlines the
    region above --threshold."""
    if region is not None and label is not None:
        raise click.UsageError("give --region or --class, not both")
    _check_paths(("--model", model), ("--region", region), *(("input", i) for i in inputs))
    from segkit.explain import explain as run_explain

    target = region if region is not None else label
    written = run_explain(
        model, inputs, out, weights=weights, target=target, progress=not quiet, **options
    )
    pictures = [path for path in written if path.suffix == ".png"]
    click.echo(f"{_count(len(pictures), 'saliency map')} written to {out}")


@cli.command()
@_model_options
@click.option("--format", "fmt", type=click.Choice(["onnx", "tf_saved_model"]), default="onnx")
@click.option("--out", required=True, type=click.Path(), help="Output file or folder.")
@_random_weights_option
@click.option(
    "--quantize",
    type=click.Choice(["int8"]),
    help="Write an int8 ONNX model, calibrated on --calibration, with its Dice change measured.",
)
@click.option(
    "--calibration",
    type=click.Path(),
    help="Slices to calibrate --quantize on: a data folder or a folder of images [default: a "
    "run's training split; the bundled sample for shipped weights].",
)
@click.option("--quiet", is_flag=True, help="No progress output (--quantize).")
def export(model, weights, fmt, out, random_weights, quantize, calibration, quiet):
    """Export a model to ONNX or a TensorFlow SavedModel."""
    _check_paths(("--model", model))
    from segkit.exporting import export as run_export
    from segkit.exporting import quality_path

    exported = run_export(
        model,
        out,
        format=fmt,
        weights=weights,
        random_weights=random_weights,
        quantize=quantize,
        calibration=calibration,
        progress=not quiet,
    )
    click.echo(f"exported to {exported}")
    if quantize:
        quality = json.loads(quality_path(exported).read_text())
        change = quality.get("dice_change_mean")
        measured = f"Dice change {change:+.4f}, " if change is not None else ""
        click.echo(
            f"int8 against float32 on {quality['measured_on']}: {measured}masks agree with "
            f"Dice {quality['mask_agreement_dice_mean']:.4f} (written to {quality_path(exported)})"
        )


@cli.command()
@click.option("--out", default="segkit-demo", show_default=True, type=click.Path())
@click.option("--model", default=None, help="Registered model (default: one with shipped weights).")
@click.option(
    "--no-defaults",
    "defaults",
    flag_value=False,
    default=True,
    help="Ignore the weights' stored inference defaults (TTA, post-processing, threshold).",
)
@click.option("--quiet", is_flag=True, help="No progress output.")
def demo(out, model, defaults, quiet):
    """Segment the bundled MRI sample slices and report Dice."""
    from segkit.demo import run_demo

    report = run_demo(out, model, defaults=defaults, progress=not quiet)
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
@click.option(
    "--layout", default="auto", show_default=True, help="folders, figshare-mat, lgg or volumes."
)
@_class_options
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
def inspect(root, layout, num_classes, classes, as_json):
    """Count pairs and patients, sizes and coverage per class; list every problem (exit 2 if
    any)."""
    from segkit import data as segkit_data

    report = segkit_data.inspect(root, layout=layout, num_classes=num_classes, classes=classes)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format())
    if not report.ok:
        sys.exit(2)


def _numbers(option: str, text: str | None, kind=float) -> tuple | None:
    """``"1,1,3"`` as a tuple of ``kind``; a click error naming ``option`` otherwise."""
    if text is None:
        return None
    try:
        return tuple(kind(part) for part in text.split(","))
    except ValueError:
        message = f"{text!r} is not numbers separated by commas"
        raise click.BadParameter(message, param_hint=option) from None


@cli.command()
@click.argument("data_dir", metavar="DATA", type=click.Path())
@click.option(
    "--memory", default=None, help="Memory budget, e.g. 8GB [default: half the machine's]."
)
@click.option("--out", default="plan.json", show_default=True, type=click.Path(), help="Plan file.")
@click.option(
    "--dims", type=click.Choice(["2", "3"]), default=None, help="2-D or 3-D, not derived."
)
@click.option(
    "--target-spacing", default=None, metavar="X,Y,Z", help="Target spacing (mm), not derived."
)
@click.option("--patch", default=None, metavar="X,Y[,Z]", help="Patch size, not derived.")
@click.option("--batch", type=int, default=None, help="Batch size, not derived.")
@click.option(
    "--modalities",
    default=None,
    metavar="NAME,...",
    help="Modality names (CT is normalised as CT).",
)
@click.option(
    "--voxel-spacing",
    default=None,
    metavar="X,Y,Z",
    help="LGG folders: the spacing to assume (mm) [default: 1,1,3].",
)
def plan(data_dir, memory, out, dims, target_spacing, patch, batch, modalities, voxel_spacing):
    """Derive a training plan (spacing, patch, batch, depth) from a data set, as nnU-Net does.

    Reads NIfTI cases in the volume layout (imagesTr/, labelsTr/) or LGG patient folders of
    TIFF slices, prints the plan as a table and writes it to --out atomically. Each option
    that says "not derived" replaces its rule's value.
    """
    from segkit import planning
    from segkit.data.fingerprint import fingerprint

    _check_paths(("DATA", data_dir))
    found = fingerprint(
        data_dir,
        modalities=modalities.split(",") if modalities else None,
        voxel_spacing=_numbers("--voxel-spacing", voxel_spacing),
    )
    made = planning.make_plan(
        found,
        memory=memory,
        dims=int(dims) if dims else None,
        target_spacing_mm=_numbers("--target-spacing", target_spacing),
        patch_size=_numbers("--patch", patch, int),
        batch_size=batch,
    )
    click.echo(planning.table(made))
    planning.write_plan(out, made)
    click.echo(f"plan written to {out}")


def main() -> None:
    """Entry point of the ``segkit`` console script."""
    # Warnings for people, not tracebacks: "segkit: warning: ...".
    warnings.formatwarning = lambda message, *args, **kwargs: f"segkit: warning: {message}\n"
    cli(prog_name="segkit")


if __name__ == "__main__":
    main()
