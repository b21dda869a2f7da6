"""Measure one model configuration in a fresh process and print the result as one JSON line.

A Keras backend is fixed when Keras is imported, and peak memory (``ru_maxrss``) only ever
grows, so every configuration runs in its own process::

    python -m benchmarks.worker keras --backend torch --model unet --mode train --batch 8
    python -m benchmarks.worker torch --model notebook_unet --mode predict --batch 1
    python -m benchmarks.worker export --model unet --onnx /tmp/unet.onnx
    python -m benchmarks.worker onnxruntime --onnx /tmp/unet.onnx --batch 8
    python -m benchmarks.worker export --model resunet.figshare --onnx /tmp/r.onnx --quantize int8
    python -m benchmarks.worker segmenter --model /tmp/r.onnx --batch 8
    python -m benchmarks.worker segmenter --model resunet.figshare --precision bfloat16 --dice

``segmenter`` runs what ``segkit predict`` runs: ``segkit.load_model(--model, precision=...)``
without the model's stored inference defaults (no TTA or post-processing: the figures measure
the network itself), timing its forward pass on a batch; with ``--dice`` it instead scores the
model on the Figshare test blocks (``segkit.evaluate``) and returns the per-image Dice.

Modes: ``train`` times one optimiser step on a batch (Adam 1e-4, the notebook's Dice loss);
``predict`` times one forward pass over a batch (Keras: ``model.predict``). Warm-up steps run
first, so compilation and tracing are excluded. The JSON holds the seconds of each timed step,
their mean (``time_s``), images per second, and peak resident memory of the process with the
part added after the imports (``rss_increase_mib``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB.

    On Linux this is ``VmHWM`` from ``/proc/self/status``: ``ru_maxrss`` survives ``exec``, so
    in a worker started by a large parent process it would report the parent's peak instead.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def random_batch(batch: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Random channels-last images in [0, 1] and binary masks, ``(batch, size, size, 1)``."""
    rng = np.random.default_rng(0)
    images = rng.random((batch, size, size, 1), dtype=np.float32)
    masks = (rng.random((batch, size, size, 1)) > 0.9).astype(np.float32)
    return images, masks


def time_steps(step, warmup: int, steps: int) -> list[float]:
    """Run ``step`` ``warmup`` times untimed, then ``steps`` times; seconds of each timed run."""
    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return seconds


def measure_keras(args) -> dict:
    """segkit's model on the Keras backend ``args.backend``."""
    os.environ["KERAS_BACKEND"] = args.backend
    import keras

    import segkit.models
    from segkit.backend import default_data_format

    imported_mib = peak_rss_mib()
    keras.utils.set_random_seed(0)
    data_format = args.data_format or default_data_format()
    keras.config.set_dtype_policy(args.precision)  # as `segkit train --precision` does
    model = segkit.models.get(
        args.model, input_shape=(args.size, args.size, 1), data_format=data_format
    )
    images, masks = random_batch(args.batch, args.size)
    if args.mode == "train":
        from segkit.losses import DiceLoss

        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=DiceLoss())
        seconds = time_steps(lambda: model.train_on_batch(images, masks), args.warmup, args.steps)
    else:
        predict = lambda: model.predict(images, batch_size=args.batch, verbose=0)  # noqa: E731
        seconds = time_steps(predict, args.warmup, args.steps)
    return result(
        args,
        seconds,
        imported_mib,
        params=model.count_params(),
        data_format=data_format,
        device=_keras_device(),
    )


def _keras_device() -> str:
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    if backend == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    if backend == "jax":
        import jax

        return jax.default_backend()
    return "cpu"


def measure_torch(args) -> dict:
    """A PyTorch-native peer from :mod:`benchmarks.peers`, eager mode."""
    import torch

    from benchmarks import peers

    imported_mib = peak_rss_mib()
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = peers.build(args.model).to(device)
    images, masks = (
        torch.from_numpy(a).permute(0, 3, 1, 2).contiguous().to(device)
        for a in random_batch(args.batch, args.size)
    )
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if args.mode == "train":
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss = peers.dice_loss(model(images), masks)
            loss.backward()
            optimizer.step()
            loss.item()
    else:
        model.eval()

        def step():
            with torch.inference_mode():
                model(images).cpu()

    seconds = time_steps(lambda: (step(), sync()), args.warmup, args.steps)
    extra = {}
    if device == "cuda":
        extra["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result(
        args,
        seconds,
        imported_mib,
        params=peers.count_parameters(model),
        data_format="channels_first",
        device=device,
        **extra,
    )


def export_onnx(args) -> dict:
    """Export segkit's model to ``args.onnx`` from the TensorFlow backend (untimed setup).

    A model with shipped weights (``resunet.figshare``) is exported by ``segkit.export``, as
    ``segkit export`` does, int8 with ``--quantize int8``; a bare name is built untrained.
    """
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras

    import segkit.models

    if "." in args.model:
        start = time.perf_counter()
        segkit.export(args.model, args.onnx, quantize=args.quantize)
        return {"onnx": args.onnx, "export_s": time.perf_counter() - start}

    keras.utils.set_random_seed(0)
    model = segkit.models.get(args.model, input_shape=(args.size, args.size, 1))
    model(np.zeros((1, args.size, args.size, 1), np.float32))
    start = time.perf_counter()
    model.export(args.onnx, format="onnx", verbose=False)
    return {
        "onnx": args.onnx,
        "export_s": time.perf_counter() - start,
        "params": model.count_params(),
    }


def measure_onnxruntime(args) -> dict:
    """An exported ONNX model on onnxruntime's CPU execution provider."""
    import onnxruntime as ort

    imported_mib = peak_rss_mib()
    session = ort.InferenceSession(args.onnx, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    images, _ = random_batch(args.batch, args.size)
    seconds = time_steps(lambda: session.run(None, {name: images}), args.warmup, args.steps)
    return result(args, seconds, imported_mib, device="cpu")


def measure_segmenter(args) -> dict:
    """``segkit.load_model(args.model, precision=args.precision)``: its forward pass on a batch,
    or with ``--dice`` its per-image Dice on the Figshare test blocks."""
    os.environ["KERAS_BACKEND"] = args.backend
    import segkit
    from segkit.backend import cpu_features

    imported_mib = peak_rss_mib()
    # Without TTA and post-processing, so precisions are compared on the network alone.
    segmenter = segkit.load_model(args.model, precision=args.precision, defaults=False)
    if args.dice:
        root = Path(__file__).resolve().parent.parent
        data = Path(os.environ.get("SEGKIT_SHARED_DATA", root.parent / "shared" / "data"))
        manifest = root / "docs" / "manifests" / "figshare-256-blocks-seed0.json"
        start = time.perf_counter()
        report = segkit.evaluate(
            segmenter, data / "figshare-brain-tumor-256", manifest=manifest, subset="test"
        )
        return {
            "dice": [image["dice"] for image in report["images"]],
            "keys": [image["key"] for image in report["images"]],
            "dice_mean": report["dice_mean"],
            "evaluate_s": time.perf_counter() - start,
        }
    images, _ = random_batch(args.batch, segmenter.prep.size[0])
    seconds = time_steps(lambda: segmenter.run(images), args.warmup, args.steps)
    extra = {"precision": segmenter.precision, "cpu_features": sorted(cpu_features())}
    if segmenter.network is not None:
        from segkit.models.flops import count_flops

        extra["gflops"] = count_flops(segmenter.network) / 1e9
    return result(args, seconds, imported_mib, device="cpu", **extra)


def result(args, seconds: list[float], imported_mib: float, **extra) -> dict:
    """The JSON record of one measurement."""
    mean = sum(seconds) / len(seconds)
    peak = peak_rss_mib()
    return {
        "mode": args.mode,
        "batch": args.batch,
        "size": args.size,
        "step_s": seconds,
        "time_s": mean,
        "images_per_s": args.batch / mean,
        "peak_rss_mib": peak,
        "rss_increase_mib": peak - imported_mib,
        **extra,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "framework", choices=["keras", "torch", "export", "onnxruntime", "segmenter"]
    )
    parser.add_argument(
        "--model", default="unet", help="segkit model name, or a peer name for 'torch'"
    )
    parser.add_argument("--backend", default="tensorflow", help="Keras backend for 'keras'")
    parser.add_argument(
        "--data-format",
        choices=["channels_first", "channels_last"],
        help="layout segkit computes in (default: segkit's default)",
    )
    parser.add_argument(
        "--precision",
        default="float32",
        help="'keras': a Keras dtype policy (mixed_bfloat16); 'segmenter': float32 or bfloat16",
    )
    parser.add_argument("--mode", choices=["train", "predict"], default="predict")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="image height and width")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=2, help="timed steps")
    parser.add_argument("--onnx", help="ONNX file to write ('export') or run ('onnxruntime')")
    parser.add_argument("--quantize", choices=["int8"], help="'export': quantize the ONNX file")
    parser.add_argument(
        "--dice", action="store_true", help="'segmenter': score on the Figshare test blocks"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    measure = {
        "keras": measure_keras,
        "torch": measure_torch,
        "export": export_onnx,
        "onnxruntime": measure_onnxruntime,
        "segmenter": measure_segmenter,
    }[args.framework]
    record = measure(args)
    # Libraries log to stdout too: the record is the last line, marked for the caller.
    print("BENCHMARK-RESULT " + json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
