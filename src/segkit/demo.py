"""The demo: segment the bundled brain-tumour MRI slices and report how well it went."""

from __future__ import annotations

import warnings
from importlib.resources import files
from pathlib import Path

from segkit.inference import load_model, predict
from segkit.models import pretrained as shipped
from segkit.models import split_name
from segkit.reports import evaluate, format_table

#: Models the demo runs by default, in order of preference, when their weights ship: the most
#: accurate shipped model first (the notebook's residual U-Net), then its U-Net.
DEMO_MODELS = ("resunet", "unet")


def sample_dir() -> Path:
    """Folder of the bundled Figshare sample slices (``images/``, ``masks/``, ``labels.csv``)."""
    return Path(str(files("segkit") / "sample"))


def demo_model() -> str:
    """The model the demo runs when none is named: the first of `DEMO_MODELS` with shipped
    weights, else any model with shipped weights, else ``"unet"`` (with random weights)."""
    every = [split_name(name)[0] for name in shipped.available()]
    preferred = [name for name in DEMO_MODELS if name in every]
    return (preferred or every or ["unet"])[0]


def run_demo(
    out: str | Path = "segkit-demo",
    model: str | None = None,
    *,
    defaults: bool = True,
    progress: bool = False,
) -> dict:
    """Segment the bundled sample with a model's shipped weights.

    Writes ``<out>/<n>_overlay.png`` (predicted outline orange, true outline sky blue),
    ``<out>/<n>_mask.png`` and ``<out>/report.json``.

    Args:
        out: output folder.
        model: a registered model name; by default `demo_model()` (the most accurate of the
            notebook's networks with shipped weights). A model without shipped weights runs
            with random weights and a warning: the masks are then meaningless, but every step
            runs.
        defaults: False ignores the weights' stored inference defaults (test-time augmentation,
            post-processing, threshold; see `segkit.load_model`).
        progress: show predict's and evaluate's progress on standard error.

    Returns:
        The evaluation report.
    """
    out = Path(out)
    if model is None:
        model = demo_model()
    tags = shipped.available(model)
    if tags:
        segmenter = load_model(tags[0], defaults=defaults)
    else:
        warnings.warn(
            f"no trained weights ship for {model!r} yet: the demo runs with RANDOM weights, "
            "so its masks and Dice mean nothing",
            UserWarning,
            stacklevel=2,
        )
        segmenter = load_model(model, random_weights=True)
    sample = sample_dir()
    predict(
        segmenter,
        [sample / "images"],
        out,
        overlays=True,
        true_masks=sample / "masks",
        progress=progress,
    )
    report = evaluate(segmenter, sample, out / "report.json", progress=progress)
    report["table"] = format_table(report)
    if tags:
        # Said out loud so that nobody quotes the demo's Dice as a held-out score.
        report["note"] = (
            "the bundled slices lie in the training blocks of the shipped weights, so this is "
            "not a held-out score; held-out numbers are on the model cards"
        )
    return report
