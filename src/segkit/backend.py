"""Choosing the Keras backend before Keras is imported.

``KERAS_BACKEND`` always wins. When it is unset, segkit picks the first installed backend in
`PREFERENCE`, the order measured fastest for training on CPU (see the Benchmarks page).
With none of them installed segkit still reads data and runs exported ONNX models
(``segkit[onnx]``); building or training a model then asks for a backend.

It also answers what the current backend and CPU can run: `channels_first_supported` (TensorFlow
has NCHW convolutions on CPU only with its oneDNN kernels) and `native_bfloat16` (bfloat16 is
fast only where the hardware computes it).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import warnings
from pathlib import Path

#: Backends in the order segkit prefers them when ``KERAS_BACKEND`` is unset.
PREFERENCE = ("tensorflow", "torch", "jax")


def choose_backend() -> str | None:
    """Return the backend Keras will use, setting ``KERAS_BACKEND`` if it is unset.

    Returns None when no backend is installed. Has no effect once Keras is imported: Keras
    fixes its backend at import time.
    """
    chosen = os.environ.get("KERAS_BACKEND")
    if chosen:
        return chosen
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    chosen = next((n for n in PREFERENCE if importlib.util.find_spec(n) is not None), None)
    if chosen is not None:
        os.environ["KERAS_BACKEND"] = chosen
    return chosen


def quiet_tensorflow_logs() -> None:
    """Keep TensorFlow's C++ start-up chatter (CPU instructions, absl notices) off standard
    error, where it buries a command's output, unless the user set ``TF_CPP_MIN_LOG_LEVEL``.
    It takes effect only before TensorFlow is imported; errors still show."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def require_backend() -> None:
    """Fail clearly, before Keras does, when no backend is installed."""
    if choose_backend() is None:
        raise ImportError(
            "building or training models needs a Keras backend: pip install "
            "'segkit[tensorflow]' (or segkit[torch], segkit[jax]). Exported .onnx models run "
            "without one (segkit[onnx])."
        )


def default_data_format() -> str:
    """The tensor layout segkit's layers compute in, unless a model is told otherwise.

    Models always take and return channels-last arrays; this only decides the layout inside.
    On torch, ``channels_first`` is the default: in the benchmark suite it took 0.77x the
    training time of ``channels_last`` on CPU, 0.6x at batch-8 prediction and 0.57x the batch-1
    latency. The other backends keep Keras' configured layout
    (``channels_last`` unless changed).
    """
    import keras

    if keras.backend.backend() == "torch":
        return "channels_first"
    return keras.config.image_data_format()


def gpu_in_use() -> bool:
    """Whether the current Keras backend computes on a GPU (or another accelerator)."""
    import keras

    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    if name == "torch":
        import torch

        return torch.cuda.is_available()
    if name == "jax":
        import jax

        return jax.default_backend() != "cpu"
    return False


@functools.cache
def channels_first_supported() -> bool:
    """Whether models can compute in ``channels_first`` on this backend and device.

    True on torch, JAX and TensorFlow with a GPU. TensorFlow on CPU runs NCHW convolutions only
    through its oneDNN kernels, which it turns on by default on Linux for CPUs with VNNI,
    AVX-512 BF16 or AMX (and ``TF_ENABLE_ONEDNN_OPTS=0`` turns off); elsewhere, an AVX2-only
    CPU for example, it fails with "The Conv2D op currently only supports the NHWC tensor format
    on the CPU". So on TensorFlow without a GPU this runs the ops segkit's models compute in
    that layout once, on a tiny tensor, and reports whether they ran. The answer is cached for
    the process.
    """
    import keras

    if keras.backend.backend() != "tensorflow" or gpu_in_use():
        return True
    import tensorflow as tf

    ops = keras.ops
    images = ops.ones((1, 1, 4, 4))
    kernel = ops.ones((3, 3, 1, 1))
    try:
        ops.conv(images, kernel, padding="same", data_format="channels_first")
        ops.conv_transpose(images, kernel, strides=2, padding="same", data_format="channels_first")
        ops.max_pool(images, 2, data_format="channels_first")
    except tf.errors.OpError:  # UnimplementedError or InvalidArgumentError, by TF version
        return False
    return True


#: Where Linux lists the CPU's features; absent on macOS and Windows.
CPUINFO = Path("/proc/cpuinfo")

#: CPU features under which bfloat16 is computed natively: x86's AVX-512 BF16 and AMX, and
#: Arm's BF16 extension.
NATIVE_BFLOAT16_FEATURES = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_features() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (``avx2``, ``avx512f``, ``amx_bf16``, ...).

    Read from the first processor's ``flags`` (x86) or ``Features`` (Arm) line of
    ``/proc/cpuinfo``; empty where that file does not exist.
    """
    try:
        text = CPUINFO.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def _onednn_turned_off() -> bool:
    """Whether TensorFlow is the backend and ``TF_ENABLE_ONEDNN_OPTS`` turns its oneDNN kernels
    off, bfloat16 ones included, whatever the CPU has."""
    import keras

    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower()
    return keras.backend.backend() == "tensorflow" and setting in ("0", "false")


def native_bfloat16() -> bool:
    """Whether bfloat16 compute is native here: a GPU is in use, or the CPU has BF16 units.

    Without them (for example an AVX2-only CPU), or on TensorFlow with oneDNN turned off,
    bfloat16 still works, but emulated, and slower than plain float32.
    """
    if gpu_in_use():
        return True
    return bool(cpu_features() & NATIVE_BFLOAT16_FEATURES) and not _onednn_turned_off()


def check_precision(precision: str) -> None:
    """Warn, in one line, when ``precision`` runs here but slower than float32.

    That is ``"mixed_bfloat16"`` without `native_bfloat16`, and ``"mixed_float16"`` without a
    GPU: CPUs compute float16 convolutions slowly on every backend (a small U-Net's training
    step at 128x128 took tens of seconds instead of under one on TensorFlow and PyTorch).
    ``"float32"`` passes silently.
    """
    if precision == "mixed_float16" and not gpu_in_use():
        warnings.warn(
            "segkit: mixed_float16 is meant for GPUs; on CPU it trains much slower than float32; "
            "use precision='float32' (or 'mixed_bfloat16' on a CPU with native bfloat16)",
            UserWarning,
            stacklevel=2,
        )
    if precision != "mixed_bfloat16" or native_bfloat16():
        return
    if _onednn_turned_off():
        reason = "TF_ENABLE_ONEDNN_OPTS=0 turns off TensorFlow's bfloat16 kernels"
    else:
        reason = "the CPU's flags have no avx512_bf16, amx_bf16 or bf16"
    warnings.warn(
        f"segkit: mixed_bfloat16 is emulated here ({reason}), so it trains slower than "
        "float32; use precision='float32' here",
        UserWarning,
        stacklevel=2,
    )
