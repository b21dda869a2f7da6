"""Loading ``.keras`` files whatever layout they were saved in.

A model saved in ``channels_first`` (the default on torch) records that layout in its layers'
config. Where that layout cannot run (TensorFlow on a CPU without oneDNN, see
`segkit.backend.channels_first_supported`), `load_keras_model` rewrites the config to
``channels_last`` and loads the same weights: convolution kernels, batch-norm statistics and
optimizer state do not depend on the layout, and segkit models take and return channels-last
arrays either way, so the result computes the same function.
"""

from __future__ import annotations

import json
import tempfile
import warnings
import zipfile
from pathlib import Path

import keras

from segkit import backend

#: Where a channels-first axis of a 4-D tensor ends up in channels-last order (N, C, H, W ->
#: N, H, W, C), for non-negative and negative axes.
_AXIS_TO_CHANNELS_LAST = {0: 0, 1: 3, 2: 1, 3: 2, -4: 0, -3: -1, -2: 1, -1: 2}

#: segkit's transposes into and out of the channels-first part of a model (`model_input` and
#: `segmentation_head`), by layer name.
_TO_CHANNELS_FIRST = "to_channels_first"
_TO_CHANNELS_LAST = "to_channels_last"


def load_keras_model(path: str | Path, *, compile: bool = False) -> keras.Model:
    """Load a ``.keras`` file, in ``channels_last`` where ``channels_first`` cannot run.

    Use this instead of ``keras.saving.load_model`` for any model segkit saves. Files that
    compute in ``channels_last``, or in ``channels_first`` where that runs, load unchanged.
    Otherwise the layers' data formats and channel axes change to ``channels_last``, the
    model's two transposes become identities, the same weights (and, with ``compile``, the
    optimizer state) load, and one warning says so.

    Args:
        path: the ``.keras`` file.
        compile: also restore the loss, metrics and optimizer state, as for resuming training.

    Raises:
        ValueError: a channels-first model that segkit did not build (its layers compute on
            the channels-first input directly), which cannot be re-laid out.
    """
    path = Path(path)
    config = _read_config(path)
    if config is None or not _uses_channels_first(config) or backend.channels_first_supported():
        return keras.saving.load_model(path, compile=compile)
    channels_last = to_channels_last(config, source=path)
    with tempfile.TemporaryDirectory() as folder:
        rewritten = Path(folder) / path.name
        with zipfile.ZipFile(path) as original, zipfile.ZipFile(rewritten, "w") as copy:
            for entry in original.infolist():
                if entry.filename == "config.json":
                    copy.writestr(entry, json.dumps(channels_last))
                else:
                    copy.writestr(entry, original.read(entry))
        model = keras.saving.load_model(rewritten, compile=compile)
    warnings.warn(
        f"segkit: {path} computes in channels_first, which TensorFlow cannot run on this CPU; "
        "loaded it in channels_last, with the same weights and outputs",
        UserWarning,
        stacklevel=2,
    )
    return model


def _read_config(path: Path) -> dict | None:
    """The archive's model config, or None when it is not a ``.keras`` archive (Keras then
    reports what is wrong with the file)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (OSError, zipfile.BadZipFile, KeyError, json.JSONDecodeError):
        return None


def _uses_channels_first(config) -> bool:
    if isinstance(config, dict):
        if config.get("data_format") == "channels_first":
            return True
        return any(_uses_channels_first(value) for value in config.values())
    if isinstance(config, list):
        return any(_uses_channels_first(value) for value in config)
    return False


def to_channels_last(config: dict, source: str | Path = "the model") -> dict:
    """A functional model's config, rewritten to compute in ``channels_last``.

    Follows the layout of every layer's output from the inputs (channels-last) through the
    ``to_channels_first`` transpose and back through each ``*to_channels_last`` transpose.
    Layers between them get ``channels_last`` data formats, channel axes and built shapes;
    the transposes become ``Identity`` layers. The input and the weights are unchanged.

    Raises:
        ValueError: the config is not a functional model's, or computes channels-first on a
            tensor that no ``to_channels_first`` transpose produced.
    """
    if config.get("class_name") not in ("Functional", "Model") or "layers" not in config.get(
        "config", {}
    ):
        raise ValueError(f"{source}: only functional models can be re-laid out to channels_last")
    config = json.loads(json.dumps(config))  # a deep copy
    first: set[str] = set()  # layers whose output is channels-first
    for layer in config["config"]["layers"]:
        name = layer["config"]["name"]
        inputs = _input_tensors(layer.get("inbound_nodes", []))
        inputs_first = {t["config"]["keras_history"][0] in first for t in inputs}
        if layer["class_name"] == "Permute" and name == _TO_CHANNELS_FIRST:
            first.add(name)
            _make_identity(layer)
        elif layer["class_name"] == "Permute" and name.endswith(_TO_CHANNELS_LAST):
            _make_identity(layer)
        elif True in inputs_first:
            if False in inputs_first:
                raise ValueError(f"{source}: layer {name!r} mixes channels-first and -last inputs")
            first.add(name)
            _relayout_layer(layer)
        elif layer["config"].get("data_format") == "channels_first":
            raise ValueError(
                f"{source}: layer {name!r} computes channels_first on channels-last input; "
                "load this model on a backend that runs channels_first (torch, JAX, a GPU)"
            )
        for tensor in inputs:
            if tensor["config"]["keras_history"][0] in first:
                tensor["config"]["shape"] = _shape_to_channels_last(tensor["config"]["shape"])
    return config


def _input_tensors(value) -> list[dict]:
    """The serialized Keras tensors inside a layer's ``inbound_nodes``, at any depth."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return [value]
        return [t for item in value.values() for t in _input_tensors(item)]
    if isinstance(value, list):
        return [t for item in value for t in _input_tensors(item)]
    return []


def _make_identity(layer: dict) -> None:
    keep = ("name", "trainable", "dtype")
    layer.update(
        module="keras.layers",
        class_name="Identity",
        registered_name=None,
        config={key: layer["config"][key] for key in keep if key in layer["config"]},
    )
    layer.pop("build_config", None)


def _relayout_layer(layer: dict) -> None:
    settings = layer["config"]
    if "data_format" in settings:
        settings["data_format"] = "channels_last"
    axis = settings.get("axis")
    if isinstance(axis, int):
        settings["axis"] = _AXIS_TO_CHANNELS_LAST[axis]
    elif isinstance(axis, list):
        settings["axis"] = [_AXIS_TO_CHANNELS_LAST[a] for a in axis]
    build = layer.get("build_config") or {}
    if "input_shape" in build:
        build["input_shape"] = _shape_to_channels_last(build["input_shape"])


def _shape_to_channels_last(shape):
    """``(N, C, H, W)`` to ``(N, H, W, C)``; a list of shapes (merge layers) shape by shape."""
    if isinstance(shape, list) and shape and all(isinstance(s, list) for s in shape):
        return [_shape_to_channels_last(s) for s in shape]
    if isinstance(shape, list) and len(shape) == 4:
        batch, channels, height, width = shape
        return [batch, height, width, channels]
    return shape
