"""Validation Dice after the same CPU budget: segkit's ``fast_unet`` against MONAI's ``UNet``.

Both networks see the same data, split, loss and augmentation; only the network and the
framework differ::

    python -m benchmarks.time_to_dice segkit --minutes 45 --out runs/ttd-segkit.json
    python -m benchmarks.time_to_dice monai --minutes 45 --out runs/ttd-monai.json
    python -m benchmarks.time_to_dice report runs/ttd-segkit.json runs/ttd-monai.json

- **Data**: the Figshare slices (``--data``), split by ``--manifest`` (the patient-safe blocks
  the shipped weights use), whole slices downsampled to ``--image-size``, divided by 255.
- **Batches**: segkit's ``SegmentationDataset`` with ``data.Augment()`` and one seed, so both
  runs draw the same augmented batches in the same order; the MONAI run transposes them to
  ``(N, C, H, W)``.
- **Loss**: BCE + soft Dice pooled over the batch with smoothing 1 (segkit's ``bce_dice``;
  MONAI's ``DiceCELoss(sigmoid=True, batch=True, smooth_nr=1, smooth_dr=1)``, the same formula
  on logits). Adam at a constant ``--lr``, batch ``--batch-size``, float32.
- **Budget**: CPU seconds of the training process (``time.process_time``, every thread), with
  the framework on ``--threads`` threads, so two runs can share a machine without charging each
  other. Validation after each epoch stops the clock; the last epoch is cut where the budget
  runs out and validated.
- **Score**: per-image mean Dice of the validation slices at the training size, sigmoid
  probabilities thresholded at 0.5, by one NumPy function for both.

``report`` writes the table and a curve into ``docs/benchmarks.md`` and
``docs/images/time-to-dice.png``. MONAI is not a segkit dependency: ``pip install monai``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
FIGURE = ROOT / "docs" / "images" / "time-to-dice.png"
START, END = "<!-- time-to-dice:start -->", "<!-- time-to-dice:end -->"


class CpuClock:
    """CPU seconds of this process, counted only while running (validation is left out)."""

    def __init__(self) -> None:
        self.used = 0.0
        self._since: float | None = None

    def run(self) -> None:
        self._since = time.process_time()

    def pause(self) -> None:
        self.used += time.process_time() - self._since
        self._since = None

    def seconds(self) -> float:
        running = time.process_time() - self._since if self._since is not None else 0.0
        return self.used + running


def per_image_dice(probabilities: np.ndarray, masks: np.ndarray) -> float:
    """Mean over images of Dice between ``probabilities > 0.5`` and ``masks``; any layout."""
    pred = probabilities.reshape(len(probabilities), -1) > 0.5
    true = masks.reshape(len(masks), -1) > 0
    overlap = (pred & true).sum(axis=1)
    total = pred.sum(axis=1) + true.sum(axis=1)
    dice = np.where(total > 0, 2 * overlap / np.maximum(total, 1), 1.0)
    return float(dice.mean())


def load_data(args):
    """Training batches and validation arrays, the same for both runs."""
    from segkit import data

    samples = data.find_samples(args.data)
    train, val, _ = data.Split.load(args.manifest).select(samples)
    prep = data.Preprocessing(size=(args.image_size, args.image_size))
    batches = data.SegmentationDataset(
        train,
        prep,
        batch_size=args.batch_size,
        augment=data.Augment(),
        seed=args.seed,
        cache=args.cache,
        workers=1,
    )
    val_images, val_masks = data.load_arrays(val, prep, cache=args.cache, workers=1)
    return batches, val_images, val_masks


def train_segkit(args, clock: CpuClock, record) -> dict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    import segkit

    keras.utils.set_random_seed(args.seed)
    batches, val_images, val_masks = load_data(args)
    model = segkit.models.get("fast_unet", input_shape=(args.image_size, args.image_size, 1))
    model.compile(optimizer=keras.optimizers.Adam(args.lr), loss=segkit.losses.get("bce_dice"))

    class Budget(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if clock.seconds() >= args.minutes * 60:
                self.model.stop_training = True

    epoch = 0
    while clock.seconds() < args.minutes * 60:
        batches.set_epoch(epoch)
        clock.run()
        model.fit(batches, epochs=1, callbacks=[Budget()], verbose=0)
        clock.pause()
        epoch += 1
        probabilities = model.predict(val_images, batch_size=args.batch_size, verbose=0)
        record(epoch, per_image_dice(probabilities, val_masks))
    return {
        "network": "segkit fast_unet (default config)",
        "framework": f"segkit {segkit.__version__}, keras {keras.__version__}, "
        f"{keras.backend.backend()} {tf.__version__}",
        "parameters": int(model.count_params()),
    }


def train_monai(args, clock: CpuClock, record) -> dict:
    os.environ["KERAS_BACKEND"] = "torch"  # segkit's data pipeline then loads no TensorFlow
    import monai
    import torch
    from monai.losses import DiceCELoss

    from benchmarks import peers

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(args.seed)
    batches, val_images, val_masks = load_data(args)
    network = peers.build("monai_unet")[0]  # the UNet without its sigmoid: the loss takes logits
    loss_fn = DiceCELoss(sigmoid=True, batch=True, smooth_nr=1.0, smooth_dr=1.0)
    optimizer = torch.optim.Adam(network.parameters(), lr=args.lr)

    def channels_first(array):
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(array, -1, 1), np.float32))

    epoch = 0
    while clock.seconds() < args.minutes * 60:
        batches.set_epoch(epoch)
        network.train()
        clock.run()
        for index in range(len(batches)):
            images, masks = batches[index]
            optimizer.zero_grad()
            loss = loss_fn(network(channels_first(images)), channels_first(masks))
            loss.backward()
            optimizer.step()
            if clock.seconds() >= args.minutes * 60:
                break
        clock.pause()
        epoch += 1
        network.eval()
        with torch.no_grad():
            logits = [
                network(channels_first(val_images[i : i + args.batch_size]))
                for i in range(0, len(val_images), args.batch_size)
            ]
        probabilities = torch.sigmoid(torch.cat(logits)).numpy()
        record(epoch, per_image_dice(probabilities, val_masks))
    return {
        "network": "MONAI UNet, channels 32-512, strides 2, 2 residual units",
        "framework": f"MONAI {monai.__version__}, torch {torch.__version__}, plain training loop",
        "parameters": peers.count_parameters(network),
    }


def run(args) -> None:
    from segkit._io import write_json

    clock = CpuClock()
    curve = []

    def record(epoch: int, dice: float) -> None:
        curve.append({"epoch": epoch, "cpu_minutes": clock.seconds() / 60, "val_dice": dice})
        print(f"epoch {epoch}: {clock.seconds() / 60:.1f} CPU-min, val Dice {dice:.4f}", flush=True)

    started = time.time()
    trainer = train_segkit if args.runner == "segkit" else train_monai
    about = trainer(args, clock, record)
    result = {
        **about,
        "runner": args.runner,
        "settings": {k: v for k, v in vars(args).items() if k not in ("runner", "out")},
        "curve": curve,
        "final_val_dice": curve[-1]["val_dice"],
        "best_val_dice": max(point["val_dice"] for point in curve),
        "epochs": len(curve),
        "wall_minutes": (time.time() - started) / 60,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    write_json(args.out, result)


def report(paths: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [json.loads(Path(p).read_text()) for p in paths]
    settings = results[0]["settings"]
    lines = [
        START,
        f"Measured {results[0]['date']} by `python -m benchmarks.time_to_dice` with "
        f"`--minutes {settings['minutes']:g} --image-size {settings['image_size']} "
        f"--threads {settings['threads']}`, the runs side by side on one {results[0]['machine']} "
        "machine (CPU time is counted per process, so sharing it does not charge either run).",
        "",
        "| network | framework | parameters | epochs in budget | val Dice at the end "
        "| best val Dice | Dice per CPU-hour |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    figure, axes = plt.subplots(figsize=(6, 3.5))
    for result in results:
        hours = result["curve"][-1]["cpu_minutes"] / 60
        lines.append(
            f"| {result['network']} | {result['framework']} | {result['parameters']:,} "
            f"| {result['epochs']} | {result['final_val_dice']:.3f} "
            f"| {result['best_val_dice']:.3f} | {result['final_val_dice'] / hours:.2f} |"
        )
        axes.plot(
            [p["cpu_minutes"] for p in result["curve"]],
            [p["val_dice"] for p in result["curve"]],
            marker="o",
            markersize=3,
            label=result["network"],
        )
    lines.append(END)
    axes.set_xlabel("training CPU minutes")
    axes.set_ylabel("validation Dice (per image)")
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(FIGURE, dpi=120)
    text = DOC.read_text()
    head, rest = text.split(START)
    _, tail = rest.split(END)
    DOC.write_text(head + "\n".join(lines) + tail)
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="runner", required=True)
    for name in ("segkit", "monai"):
        one = sub.add_parser(name)
        one.add_argument(
            "--data", default=str(ROOT.parent / "shared/data/figshare-brain-tumor-256")
        )
        one.add_argument(
            "--manifest", default=str(ROOT / "docs/manifests/figshare-256-blocks-seed0.json")
        )
        one.add_argument("--minutes", type=float, default=45.0, help="training CPU minutes")
        one.add_argument("--image-size", type=int, default=128)
        one.add_argument("--batch-size", type=int, default=16)
        one.add_argument("--lr", type=float, default=1e-3)
        one.add_argument("--threads", type=int, default=1)
        one.add_argument("--seed", type=int, default=0)
        one.add_argument("--cache", default=None, help="decoded-slice cache folder")
        one.add_argument("--out", required=True)
    sub.add_parser("report").add_argument("results", nargs="+")
    args = parser.parse_args()
    # Bad input (result files to report, an --out folder that cannot be written) is one line
    # and exit status 2; an error during training keeps its traceback.
    try:
        if args.runner == "report":
            report(args.results)
            return
        from segkit._io import check_writable

        check_writable(Path(args.out).parent)  # fail now, not after the budget is spent
    except (OSError, ValueError) as exc:
        print(f"time_to_dice: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    run(args)


if __name__ == "__main__":
    main()
