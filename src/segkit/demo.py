"""The demo: segment the bundled brain-tumour MRI slices and report how well it went."""

from __future__ import annotations

import warnings
from importlib.resources import files
from pathlib import Path

from segkit import weights as shipped
from segkit.inference import load_model, predict
from segkit.reports import evaluate, format_table


def sample_dir() -> Path:
    """Folder of the bundled Figshare sample slices (``images/``, ``masks/``, ``labels.csv``)."""
    return Path(str(files("segkit") / "sample"))


def run_demo(out: str | Path = "segkit-demo", model: str = "unet") -> dict:
    """Segment the bundled sample with ``model``'s shipped weights.

    Writes ``<out>/<n>_overlay.png`` (predicted outline red, true outline green),
    ``<out>/<n>_mask.png`` and ``<out>/report.json``. Without shipped weights for ``model`` it
    uses random weights and warns: the masks are then meaningless, but every step runs.

    Returns:
        The evaluation report.
    """
    out = Path(out)
    tags = shipped.available(model)
    if tags:
        segmenter = load_model(tags[0])
    else:
        warnings.warn(
            f"no trained weights ship for {model!r} yet: the demo runs with RANDOM weights, "
            "so its masks and Dice mean nothing",
            UserWarning,
            stacklevel=2,
        )
        segmenter = load_model(model)
    sample = sample_dir()
    predict(segmenter, [sample / "images"], out, overlays=True, true_masks=sample / "masks")
    report = evaluate(segmenter, sample, out / "report.json")
    report["table"] = format_table(report)
    return report
