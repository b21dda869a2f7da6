"""Trained weights that ship inside the package, verified by checksum before loading.

Each entry of `PRETRAINED` names a weights file in ``segkit/weights/``, its SHA-256, and
the builder config it was trained with. Weights are stored as float16 ``.npz`` arrays (half the
size; outputs stay within the tolerance stated on each model card) in the order of
``model.weights``, so they load on every backend and in either data format.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import numpy as np

from segkit._io import atomic_path


@dataclass(frozen=True)
class Pretrained:
    """One set of shipped weights."""

    model: str
    tag: str
    filename: str
    sha256: str
    config: dict = field(default_factory=dict)
    preprocessing: dict = field(default_factory=dict)  # Preprocessing arguments; {} = notebook's
    description: str = ""


#: Shipped weights, keyed by ``(model name, tag)``.
PRETRAINED: dict[tuple[str, str], Pretrained] = {
    ("resunet", "figshare"): Pretrained(
        "resunet",
        "figshare",
        "resunet-figshare.npz",
        "c949bcde04a6c5c6a691dd3546df66f3368b150641ce7d86c0ae33ceb04c015e",
        description="The notebook's ResUNET on Figshare brain tumour slices (256x256, /255); "
        "per-image test Dice 0.715 on held-out patient blocks (see the model card).",
    ),
}


def available(model: str | None = None) -> list[str]:
    """``"model.tag"`` names of the shipped weights, for one model or all."""
    return sorted(f"{m}.{t}" for (m, t) in PRETRAINED if model in (None, m))


def weights_path(entry: Pretrained) -> Path:
    return Path(str(files("segkit") / "weights" / entry.filename))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_weights(model, path: str | Path) -> str:
    """Write ``model``'s weights as float16 arrays to an ``.npz`` file; return its SHA-256."""
    path = Path(path)
    arrays = {
        f"w{i:04d}": np.asarray(w.numpy() if hasattr(w, "numpy") else w, np.float16)
        for i, w in enumerate(model.get_weights())
    }
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
    return sha256(path)


def load_weights(model, path: str | Path, expected_sha256: str | None = None) -> None:
    """Load weights written by `save_weights` into ``model``, checking the checksum."""
    path = Path(path)
    if expected_sha256 is not None:
        actual = sha256(path)
        if actual != expected_sha256:
            raise ValueError(
                f"weights file {path} is corrupt or was replaced: SHA-256 {actual}, "
                f"expected {expected_sha256}"
            )
    try:
        with np.load(path) as stored:
            arrays = [stored[k] for k in sorted(stored.files)]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(
            f"{path} is not a weights file written by segkit.weights.save_weights: {exc}"
        ) from None
    targets = model.get_weights()
    if len(arrays) != len(targets) or any(a.shape != t.shape for a, t in zip(arrays, targets)):
        raise ValueError(
            f"weights file {path} does not fit model {model.name!r}: "
            f"{len(arrays)} arrays stored, {len(targets)} expected (or shapes differ)"
        )
    model.set_weights([a.astype(t.dtype) for a, t in zip(arrays, targets)])


def load_pretrained(model: str, tag: str, **config):
    """Build ``model`` with its trained config (overridable: ``data_format``) and load weights.

    Raises:
        KeyError: no such weights; the message lists those that exist.
    """
    from segkit.models import builder

    entry = PRETRAINED.get((model, tag))
    if entry is None:
        builder(model)  # an unknown model name fails with its own, clearer message
        shipped = ", ".join(available()) or "none"
        raise KeyError(f"no weights {tag!r} for model {model!r}; shipped weights: {shipped}")
    unexpected = set(config) - {"data_format"}
    if unexpected:
        raise ValueError(
            f"weights {model}.{tag} fix the architecture; only data_format may be set, "
            f"got {sorted(unexpected)}"
        )
    network = builder(model)(**{**entry.config, **config})
    load_weights(network, weights_path(entry), entry.sha256)
    return network
