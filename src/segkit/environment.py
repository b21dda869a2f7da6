"""What segkit is running on: versions and devices, for bug reports and benchmark tables."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def devices() -> list[str]:
    """Devices the active Keras backend computes on, e.g. ``["cpu"]`` or ``["cuda:0"]``."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [
            d.name.replace("/physical_device:", "").lower()
            for d in tf.config.list_physical_devices()
            if d.device_type in ("CPU", "GPU")
        ]
    if backend == "torch":
        import torch

        gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return gpus or ["cpu"]
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices()]
    return ["unknown"]


def describe_environment() -> dict[str, str]:
    """Versions of segkit, Python, Keras and the backend, and the backend's devices."""
    import keras

    import segkit
    from segkit.backend import default_data_format

    backend = keras.backend.backend()
    backend_package = {"tensorflow": "tensorflow-cpu", "torch": "torch", "jax": "jax"}.get(backend)
    backend_version = _version(backend_package) if backend_package else None
    if backend == "tensorflow" and backend_version is None:
        backend_version = _version("tensorflow")
    return {
        "segkit": segkit.__version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "keras": keras.__version__,
        "backend": f"{backend} {backend_version or '?'}",
        "data format": default_data_format(),
        "devices": ", ".join(devices()),
    }
