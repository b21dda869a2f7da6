"""Shipped trained weights: the public names of `segkit.models.pretrained`, kept here too."""

from segkit.models.pretrained import (
    PRETRAINED,
    Pretrained,
    available,
    load_pretrained,
    load_weights,
    pretrained_header,
    read_header,
    save_weights,
    sha256,
    weights_path,
)

__all__ = [
    "PRETRAINED",
    "Pretrained",
    "available",
    "load_pretrained",
    "load_weights",
    "pretrained_header",
    "read_header",
    "save_weights",
    "sha256",
    "weights_path",
]
