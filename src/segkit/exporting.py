"""Exporting a model for serving without Keras: ONNX or a TensorFlow SavedModel.

ONNX files carry the preprocessing they expect in their metadata, so ``segkit predict`` runs
them on onnxruntime alone (``pip install 'segkit[onnx]'``). Exported models take channels-last
``(B, H, W, C)`` float32 input, like the Keras models.

Export runs on the TensorFlow and PyTorch backends. On JAX, Keras' ONNX path produced a graph
that onnxruntime rejects (MaxPool "Unsupported pooling size", Keras 3.15), so segkit refuses it:
``.keras`` files load on every backend, so export the same file with ``KERAS_BACKEND=tensorflow``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from segkit._io import atomic_path
from segkit.inference import ONNX_METADATA_KEY, load_model

FORMATS = ("onnx", "tf_saved_model")


def export(
    model: str | Path, out: str | Path, *, format: str = "onnx", weights: str | None = None
) -> Path:
    """Export a model spec (run folder, ``.keras`` file, or registry name) to ``out``.

    Args:
        model: what to export; see `segkit.inference` for the forms.
        out: the ``.onnx`` file, or the SavedModel folder, to write.
        format: ``"onnx"`` or ``"tf_saved_model"`` (needs the TensorFlow backend).
        weights: weights tag when ``model`` is a registry name.

    Returns:
        ``out``.
    """
    import keras

    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    out = Path(out)
    if format == "onnx" and out.suffix != ".onnx":
        raise ValueError(f"ONNX output {out} must end in .onnx")
    backend = keras.backend.backend()
    if format == "tf_saved_model" and backend != "tensorflow":
        raise ValueError("tf_saved_model export needs KERAS_BACKEND=tensorflow")
    if format == "onnx" and backend not in ("tensorflow", "torch"):
        raise ValueError(
            f"ONNX export is not supported on the {backend} backend; run it with "
            "KERAS_BACKEND=tensorflow (or torch): model files load on every backend"
        )
    segmenter = load_model(model, weights)
    if segmenter.network is None:
        raise ValueError(f"{model} is already an exported model")
    network, prep = segmenter.network, segmenter.prep
    height, width, channels = network.input_shape[1:]
    # Exporters trace the model, which needs it to have run once.
    network(np.zeros((1, height or prep.size[0], width or prep.size[1], channels), np.float32))
    out.parent.mkdir(parents=True, exist_ok=True)
    if format == "onnx":
        import onnx

        with atomic_path(out) as tmp:
            network.export(str(tmp), format="onnx", verbose=False)
            exported = onnx.load(str(tmp))
            entry = exported.metadata_props.add()
            entry.key, entry.value = ONNX_METADATA_KEY, json.dumps(asdict(prep))
            onnx.save(exported, str(tmp))
        return out
    # Export beside the target, then swap folders, so a failure leaves any old export intact.
    staging, old = out.with_name(f".{out.name}.partial"), out.with_name(f".{out.name}.old")
    try:
        network.export(str(staging), format="tf_saved_model", verbose=False)
        if out.exists():
            out.rename(old)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return out
