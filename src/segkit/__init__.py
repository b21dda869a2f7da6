"""segkit: medical image segmentation on Keras 3."""

from segkit.backend import choose_backend

__version__ = "0.1.0"

choose_backend()

from segkit import models  # noqa: E402  (Keras must see the backend choice first)

__all__ = ["__version__", "models"]
