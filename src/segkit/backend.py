"""Choosing the Keras backend before Keras is imported.

``KERAS_BACKEND`` always wins. When it is unset, segkit picks the first installed backend in
`PREFERENCE`, the order measured fastest for training on CPU (see the Benchmarks page).
With none of them installed segkit still reads data and runs exported ONNX models
(``segkit[onnx]``); building or training a model then asks for a backend.
"""

from __future__ import annotations

import importlib.util
import os
import sys

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
