"""segkit: medical image segmentation on Keras 3.

```python
import segkit

model = segkit.models.get("unet")                    # the notebook's U-Net
segkit.train("unet", "data/figshare", "runs/unet")   # a run folder with checkpoints and logs
report = segkit.evaluate("runs/unet", "data/test")   # per-image and pooled Dice, HD95, ...
segkit.predict("runs/unet", ["scans/"], "masks/")    # mask PNGs at each image's size
segkit.export("runs/unet", "unet.onnx")              # serve with onnxruntime alone
```

Submodules and functions load on first use, so ``import segkit`` is quick and the ONNX path
runs without a deep-learning backend.
"""

from __future__ import annotations

import importlib

from segkit.backend import choose_backend, quiet_tensorflow_logs

__version__ = "0.1.0"

choose_backend()
quiet_tensorflow_logs()

_SUBMODULES = ("models", "encoders", "data", "losses", "metrics", "masks", "evaluation", "weights")
_FUNCTIONS = {
    "train": "segkit.training",
    "resume": "segkit.training",
    "evaluate": "segkit.reports",
    "predict": "segkit.inference",
    "load_model": "segkit.inference",
    "export": "segkit.exporting",
    "explain": "segkit.explain",
}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"segkit.{name}")
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(_FUNCTIONS[name]), name)
    raise AttributeError(f"module 'segkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBMODULES, *_FUNCTIONS])


__all__ = ["__version__", *_SUBMODULES, *_FUNCTIONS]
