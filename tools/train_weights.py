"""Train, score and package the weights that ship with segkit (run by hand; hours on a CPU).

    python tools/train_weights.py --model fast_unet \\
        --data ../shared/data/figshare-brain-tumor-256 --out runs/fast_unet-figshare \\
        --epochs 12 --batch-size 16 --lr 1e-3 --loss bce_dice --schedule cosine

It takes every option of ``segkit train`` (with the same defaults: it has none of its own)
plus the few below. Run it again with the same arguments to resume an interrupted run. When
training ends it chooses the inference defaults (threshold, test-time augmentation,
post-processing) on the split's validation slices (`segkit.tuning.tune_inference`; the run's
``inference.json``), scores the best checkpoint on the split's test blocks with and without them
and on the 512x512 originals with them, writes float16 weights with the defaults in their
header to ``src/segkit/weights/<model>-<tag>.npz`` and prints the entry for
``segkit.models.pretrained.PRETRAINED`` and the numbers for the model card (also in
``<out>/card.json``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

import segkit
from segkit import data, training
from segkit._io import write_json
from segkit.cli import parse_train_settings, train_options
from segkit.inference import load_model, save_run_defaults
from segkit.models import pretrained
from segkit.reports import evaluate, format_table
from segkit.runs import RunFolder
from segkit.tuning import tune_inference

ROOT = Path(__file__).resolve().parents[1]


@click.command()
@click.option("--out", required=True, type=click.Path(), help="Run folder.")
@train_options
@click.option(
    "--originals",
    default=str(ROOT.parent / "shared/data/figshare-brain-tumor-512-sample"),
    show_default=True,
    help="Untouched 512x512 slices, scored as well.",
)
@click.option("--tag", default="figshare", show_default=True, help="Weights tag.")
@click.option(
    "--score-above",
    type=float,
    default=None,
    help="Touch the test blocks only if the best validation Dice beats this (a selection "
    "rule fixed before training, so weak runs never see the test set).",
)
@click.option(
    "--tune/--no-tune",
    default=True,
    show_default=True,
    help="Choose the inference defaults on the validation slices (one-channel models).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def main(out, originals, tag, score_above, tune, quiet, **settings) -> None:
    """Train (or resume), score once under the selection rule, and package the weights."""
    out = Path(out)
    run = RunFolder(out)
    start = time.perf_counter()
    if run.holds_run():
        training.resume(out, quiet=quiet)
    else:
        settings = parse_train_settings(settings)
        training.train(settings.pop("model"), settings.pop("data"), out, quiet=quiet, **settings)
    config = run.config()
    state = run.state()
    card = {
        "model": config.model,
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        "best_val_dice": state.best_dice,
        "train_hours": sum(row.get("seconds", 0.0) for row in state.history) / 3600,
        "this_call_seconds": round(time.perf_counter() - start),
    }

    if score_above is not None and state.best_dice <= score_above:
        write_json(out / "card.json", card)
        print(
            f"best validation Dice {state.best_dice:.4f} does not beat {score_above}: "
            "test blocks not scored, nothing packaged"
        )
        return

    tuning = None
    if tune and not config.class_names:
        _, validation, _ = run.split().select(data.find_samples(config.data, config.layout))
        tuning = tune_inference(load_model(out, defaults=False), validation, progress=not quiet)
        print(tuning.format_table(rows=12))
        best, plain = tuning.score(tuning.best), tuning.record("")["plain_dice_mean"]
        chosen_on = (
            f"{tuning.images} validation slices of {Path(config.data).name} (the run's split): "
            f"per-image mean Dice {best['dice_mean']:.4f}, {plain:.4f} without"
        )
        save_run_defaults(out, tuning.best, **tuning.record(chosen_on))
        card["inference"] = {"settings": tuning.best.to_dict(), "chosen_on": chosen_on}

    # The test blocks with the run's inference defaults (none without tuning) and without.
    test = evaluate(
        out, config.data, out / "test_report.json", manifest=out / "split.json", subset="test"
    )
    print(format_table(test))
    card["test"] = {k: v for k, v in test.items() if k != "images"}
    if tuning is not None:
        plain = evaluate(
            load_model(out, defaults=False),
            config.data,
            out / "test_report_without_defaults.json",
            manifest=out / "split.json",
            subset="test",
        )
        print("without the inference defaults:")
        print(format_table(plain))
        card["test_without_defaults"] = {k: v for k, v in plain.items() if k != "images"}
    alone = card.get("test_without_defaults", test)  # no tuning: the defaults are none
    test_scores = {
        "data": f"{test['n_images']} test slices of {Path(config.data).name} (the run's split)",
        "dice_mean": round(test["dice_mean"], 4),
        "dice_mean_without_defaults": round(alone["dice_mean"], 4),
    }

    segmenter = load_model(out)
    target = ROOT / "src/segkit/weights" / f"{config.model}-{tag}.npz"
    target.parent.mkdir(exist_ok=True)
    digest = pretrained.save_weights(
        segmenter.network,
        target,
        builder=config.model,
        config={"input_shape": segmenter.network.input_shape[1:], **config.model_config},
        preprocessing=config.preprocessing(),
        intensity=run.intensity(),
        inference=tuning and tuning.best,
        inference_chosen_on=card.get("inference", {}).get("chosen_on"),
        test_scores=test_scores,
    )
    card["weights"] = {"file": target.name, "sha256": digest, "bytes": target.stat().st_size}

    # float16 storage must not change the masks: compare on the test set.
    header = pretrained.read_header(target)
    half = segkit.models.get(header["builder"], **header["config"])
    pretrained.load_weights(half, target, digest)
    x = np.random.default_rng(0).random((2, 256, 256, 1), dtype=np.float32)
    card["float16_max_abs_diff"] = float(
        np.abs(half.predict(x, verbose=0) - segmenter.network.predict(x, verbose=0)).max()
    )
    if Path(originals).is_dir():
        originals = evaluate(out, originals, out / "originals_report.json")
        print(format_table(originals))
        card["originals"] = {k: v for k, v in originals.items() if k != "images"}
    write_json(out / "card.json", card)
    print(
        json.dumps(
            {
                k: card[k]
                for k in (
                    "epochs_run",
                    "best_epoch",
                    "train_hours",
                    "weights",
                    "float16_max_abs_diff",
                )
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
