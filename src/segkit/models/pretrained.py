"""Trained weights that ship inside the package, and the file format they are stored in.

A weights file is an ``.npz`` of float16 arrays (half the size; outputs stay within the
tolerance stated on each model card), one per variable, keyed by the variable's path in the
model (``down1_unit1_conv/kernel``): the same on every backend and in either data format. One
more member, ``__segkit__``, holds a JSON header: the builder's name and its full config (every
argument, defaults included, except ``data_format``), the preprocessing the model expects and
the threshold of its masks. A shipped model is built from its file's header, so changing a
builder's default later cannot change what shipped weights compute.

The header may also hold ``inference``: the model's inference defaults (threshold, test-time
augmentation and post-processing, as `segkit.inference.InferenceSettings.to_dict` writes them),
chosen on validation data, with ``inference_chosen_on`` saying how; `segkit.load_model` applies
them, and they supersede ``threshold``. Files without them load with the header's threshold, no
TTA and no post-processing. `set_inference_defaults` changes them without touching the arrays.

It may also hold ``test_scores``: the per-image mean Dice on held-out test data with the inference
defaults (``dice_mean``) and without them (``dice_mean_without_defaults``), and the data they were
measured on (``data``): the headline numbers that the docs quote, checked against the file by
``tests/test_docs_numbers.py``. `set_test_scores` stores them, the arrays again untouched.

```python
segkit.models.pretrained.available()  # ["fast_unet.figshare", "resunet.figshare", "unet.figshare"]
network = segkit.models.get("resunet.figshare")  # built from the file's config, verified
segkit.models.pretrained.pretrained_header("resunet", "figshare")["preprocessing"]
```
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from segkit._io import atomic_path
from segkit.models._registry import builder as registered_builder

FORMAT_VERSION = 1
HEADER_KEY = "__segkit__"
PREPROCESSING_ARGUMENTS = ("size", "channels", "normalize")  # what segkit.data.Preprocessing needs
PREPROCESSING_FIELDS = (*PREPROCESSING_ARGUMENTS, "num_classes", "class_source")
_POSITIONAL_KEY = re.compile(r"w\d{4}")  # files written before the header: w0000, w0001, ...


@dataclass(frozen=True)
class Pretrained:
    """One set of shipped weights; its config and preprocessing are in the file's header."""

    model: str
    tag: str
    filename: str
    sha256: str
    description: str = ""


#: Shipped weights, keyed by ``(model name, tag)``.
PRETRAINED: dict[tuple[str, str], Pretrained] = {
    ("resunet", "figshare"): Pretrained(
        "resunet",
        "figshare",
        "resunet-figshare.npz",
        "a3978a884ae0664b1820cf35016b226504c525e86431084953686cce5c713c89",
        description="The notebook's ResUNET on Figshare brain tumour slices (256x256, /255); "
        "per-image test Dice 0.764 on held-out patient blocks with its inference defaults, "
        "0.742 without (see the model card).",
    ),
    ("fast_unet", "figshare"): Pretrained(
        "fast_unet",
        "figshare",
        "fast_unet-figshare.npz",
        "c27158db78b518caef1008125512f38545eb50e0a776465c96e66e8794552bef",
        description="fast_unet (a residual U-Net at half resolution, a tenth of the FLOPs of "
        "ResUNET) on Figshare brain tumour slices (256x256, /255); per-image test Dice 0.720 "
        "on held-out patient blocks with its inference defaults, 0.686 without (see the model "
        "card).",
    ),
    ("unet", "figshare"): Pretrained(
        "unet",
        "figshare",
        "unet-figshare.npz",
        "834cf1c9bce7c9f7ac08f35bab1e2709b66151dc75f07e16bec85aeb5241afbf",
        description="The notebook's U-Net, trained from scratch on CPU, on Figshare brain "
        "tumour slices (256x256, /255); per-image test Dice 0.732 on held-out patient blocks "
        "with its inference defaults, 0.713 without (see the model card).",
    ),
}


def available(model: str | None = None) -> list[str]:
    """``"model.tag"`` names of the shipped weights, for one model or all."""
    return sorted(f"{m}.{t}" for (m, t) in PRETRAINED if model in (None, m))


def weights_path(entry: Pretrained) -> Path:
    """Where the package keeps ``entry``'s file."""
    return Path(str(files("segkit") / "weights" / entry.filename))


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def full_config(builder: str, config: Mapping) -> dict:
    """Every argument of the builder ``builder`` except ``data_format``: ``config`` over defaults.

    Raises:
        KeyError: an unknown builder.
        ValueError: an argument the builder does not take, or a required one missing.
    """
    parameters = inspect.signature(registered_builder(builder)).parameters
    unknown = sorted(set(config) - set(parameters))
    if unknown:
        raise ValueError(
            f"builder {builder!r} takes the arguments {', '.join(parameters)}; got {unknown}"
        )
    merged = {}
    for name, parameter in parameters.items():
        if name == "data_format":  # a layout to compute in, not part of what was trained
            continue
        if name == "encoder_weights":
            # Where training started: the file holds every weight, so rebuilding needs no
            # download or local file, which may no longer be there.
            merged[name] = None
            continue
        if name in config:
            merged[name] = config[name]
        elif parameter.default is inspect.Parameter.empty:
            raise ValueError(f"builder {builder!r} needs the argument {name!r}")
        else:
            merged[name] = parameter.default
    return merged


def save_weights(
    model,
    path: str | Path,
    *,
    builder: str,
    config: Mapping,
    preprocessing,
    threshold: float = 0.5,
    intensity=None,
    inference=None,
    inference_chosen_on: str | None = None,
    test_scores: Mapping | None = None,
) -> str:
    """Write ``model``'s weights and how to rebuild and feed it to an ``.npz``; return its SHA-256.

    Args:
        model: the network, as built by ``builder`` with ``config``.
        path: the file to write (atomically: a crash leaves the old file or none).
        builder: the registered model name that builds ``model``.
        config: the arguments ``model`` was built with; the builder's defaults fill the rest.
        preprocessing: a `segkit.data.Preprocessing`, or a dict of its ``size``, ``channels``
            and ``normalize``.
        threshold: probability above which a pixel is foreground.
        intensity: the `segkit.data.intensity.IntensityRange` of the training images (or its
            dict), so that inputs unlike them are noticed; None records none.
        inference: the model's inference defaults, a `segkit.inference.InferenceSettings` (or
            its dict); None records none.
        inference_chosen_on: how they were chosen (data, split, score), for its model card.
        test_scores: its held-out scores (see `set_test_scores`); None records none.

    Raises:
        ValueError: config or preprocessing that cannot describe the model.
    """
    if dataclasses.is_dataclass(preprocessing):
        # Class settings at their binary defaults are left out, so binary headers stay as
        # they were before label maps existed.
        binary = {"num_classes": None, "class_source": "mask"}
        preprocessing = {
            k: v
            for k, v in dataclasses.asdict(preprocessing).items()
            if k not in binary or v != binary[k]
        }
    if not set(PREPROCESSING_ARGUMENTS) <= set(preprocessing) <= set(PREPROCESSING_FIELDS):
        raise ValueError(
            f"preprocessing needs {', '.join(PREPROCESSING_ARGUMENTS)} (and may hold "
            f"num_classes, class_source); got {sorted(preprocessing)}"
        )
    header = {
        "format_version": FORMAT_VERSION,
        "builder": builder,
        "config": full_config(builder, config),
        "preprocessing": dict(preprocessing),
        "threshold": float(threshold),
    }
    if intensity is not None:
        header["intensity"] = intensity if isinstance(intensity, dict) else intensity.to_dict()
    header.update(_inference_fields(inference, inference_chosen_on))
    if test_scores is not None:
        header["test_scores"] = _test_scores(test_scores)
    arrays = {}
    for variable in model.weights:
        arrays[variable.path] = np.asarray(variable.numpy(), np.float16)
    return _write(path, header, arrays)


def set_inference_defaults(path: str | Path, inference, chosen_on: str | None = None) -> str:
    """Store (or, with None, remove) a weights file's inference defaults; the arrays are
    written back unchanged, bit for bit. Returns the file's new SHA-256.

    Args:
        path: a weights file written by `save_weights`.
        inference: a `segkit.inference.InferenceSettings` (or its dict), or None.
        chosen_on: how they were chosen (data, split, score), for the model card.

    Raises:
        ValueError: a file that is not a weights file with a header.
    """
    header = read_header(path)  # checks the format; its tuples go back to JSON lists
    for key in ("inference", "inference_chosen_on"):
        header.pop(key, None)
    header.update(_inference_fields(inference, chosen_on))
    return _rewrite_header(path, header)


def set_test_scores(path: str | Path, scores: Mapping) -> str:
    """Store a weights file's held-out test scores; the arrays are written back unchanged, bit
    for bit. Returns the file's new SHA-256.

    Args:
        path: a weights file written by `save_weights`.
        scores: ``data`` (what was scored, in words), ``dice_mean`` (per-image mean Dice with
            the file's inference defaults) and ``dice_mean_without_defaults`` (the network
            alone: no TTA, threshold 0.5, no post-processing).

    Raises:
        ValueError: a file that is not a weights file with a header, or scores missing a field.
    """
    header = read_header(path)
    header["test_scores"] = _test_scores(scores)
    return _rewrite_header(path, header)


def _test_scores(scores: Mapping) -> dict:
    fields = ("data", "dice_mean", "dice_mean_without_defaults")
    if set(scores) != set(fields):
        raise ValueError(f"test scores need exactly {', '.join(fields)}; got {sorted(scores)}")
    return {"data": str(scores["data"])} | {k: float(scores[k]) for k in fields[1:]}


def _rewrite_header(path: str | Path, header: dict) -> str:
    """Write ``header`` into the weights file at ``path`` with its arrays as they are."""
    stored = _read_arrays(path)
    del stored[HEADER_KEY]
    return _write(path, header, stored)


def _inference_fields(inference, chosen_on: str | None) -> dict:
    if inference is None:
        return {}
    fields = {"inference": inference if isinstance(inference, dict) else inference.to_dict()}
    if chosen_on:
        fields["inference_chosen_on"] = chosen_on
    return fields


def _write(path: str | Path, header: dict, arrays: dict[str, np.ndarray]) -> str:
    """Write the header and arrays to ``path`` atomically; return the file's SHA-256."""
    try:
        header_bytes = json.dumps(header).encode()
    except TypeError as exc:
        raise ValueError(f"config and preprocessing must be JSON values: {exc}") from None
    path = Path(path)
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **{HEADER_KEY: np.frombuffer(header_bytes, np.uint8)}, **arrays)
    return sha256(path)


def read_header(path: str | Path) -> dict:
    """The header of a weights file: builder, config, preprocessing and threshold (and, where
    recorded, the intensity range of the training images and the inference defaults).

    JSON has no tuples; ``input_shape``, ``size`` and ``channels`` come back as the tuples the
    builders and `segkit.data.Preprocessing` are given.

    Raises:
        ValueError: a file that is not a weights file with a header, naming it.
    """
    stored = _read_arrays(path, only=HEADER_KEY)
    if HEADER_KEY not in stored:
        raise ValueError(
            f"{path} has no {HEADER_KEY} header: a positional weights file from an older "
            "segkit, which loads into a model you build but does not say how to build it"
        )
    header = json.loads(stored[HEADER_KEY].tobytes())
    if header.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} is in weights format {header.get('format_version')!r}; this segkit reads "
            f"{FORMAT_VERSION}: upgrade segkit"
        )
    header["config"] = _tuples(header["config"])
    header["preprocessing"] = _tuples(header["preprocessing"])
    return header


def load_weights(model, path: str | Path, expected_sha256: str | None = None) -> None:
    """Load weights written by `save_weights` into ``model``, matching them by name.

    Files from older segkit versions stored the arrays by position (``w0000``, ``w0001``, ...,
    in the order of ``model.weights``) without a header; they still load, by position, so
    ``--init-from`` keeps working with the weights in existing run folders.

    Raises:
        ValueError: a checksum other than ``expected_sha256``; a file that is not a weights
            file; or weights that do not fit ``model``, naming the missing, unexpected and
            mis-shaped ones.
    """
    path = Path(path)
    if expected_sha256 is not None:
        _check_sha256(path, expected_sha256)
    stored = _read_arrays(path)
    header = stored.pop(HEADER_KEY, None)
    if header is None and all(_POSITIONAL_KEY.fullmatch(name) for name in stored):
        _load_by_position(model, path, [stored[name] for name in sorted(stored)])
        return
    wanted = {variable.path: variable for variable in model.weights}
    problems = _mismatches(stored, wanted)
    if problems:
        raise ValueError(f"weights file {path} does not fit model {model.name!r}: {problems}")
    for name, variable in wanted.items():
        variable.assign(stored[name].astype(variable.dtype))


def pretrained_header(model: str, tag: str) -> dict:
    """The header of shipped weights (see `read_header`), checksum verified, nothing built.

    Raises:
        KeyError: no such weights; the message lists those that exist.
        ValueError: a file that is corrupt or was replaced.
    """
    return read_header(_verified_path(_entry(model, tag)))


def load_pretrained(model: str, tag: str, **config):
    """Build the model its weights file describes and load the weights into it.

    The architecture is the file's builder and config, whatever the builder's defaults are now;
    only ``data_format`` (a layout to compute in) may be chosen.

    Raises:
        KeyError: no such weights; the message lists those that exist.
        ValueError: other config, or a file that is corrupt or was replaced.
    """
    unexpected = set(config) - {"data_format"}
    if unexpected:
        _entry(model, tag)  # an unknown name or tag is the clearer error
        raise ValueError(
            f"weights {model}.{tag} fix the architecture; only data_format may be set, "
            f"got {sorted(unexpected)}"
        )
    path = _verified_path(_entry(model, tag))
    header = read_header(path)
    network = registered_builder(header["builder"])(**header["config"], **config)
    load_weights(network, path)
    return network


def _entry(model: str, tag: str) -> Pretrained:
    entry = PRETRAINED.get((model, tag))
    if entry is None:
        registered_builder(model)  # an unknown model name fails with its own, clearer message
        shipped = ", ".join(available()) or "none"
        raise KeyError(f"no weights {tag!r} for model {model!r}; shipped weights: {shipped}")
    return entry


def _verified_path(entry: Pretrained) -> Path:
    path = weights_path(entry)
    _check_sha256(path, entry.sha256)
    return path


def _check_sha256(path: Path, expected: str) -> None:
    actual = sha256(path)
    if actual != expected:
        raise ValueError(
            f"weights file {path} is corrupt or was replaced: SHA-256 {actual}, expected {expected}"
        )


def _read_arrays(path: str | Path, only: str | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (just ``only``, if stored); else a ValueError naming the file."""
    try:
        with np.load(path) as stored:
            return {name: stored[name] for name in stored.files if only in (None, name)}
    except (EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(
            f"{path} is not a weights file written by segkit's save_weights: {exc}"
        ) from None


def _load_by_position(model, path: Path, arrays: list[np.ndarray]) -> None:
    variables = model.weights
    if len(arrays) != len(variables) or any(
        a.shape != tuple(v.shape) for a, v in zip(arrays, variables)
    ):
        raise ValueError(
            f"weights file {path} does not fit model {model.name!r}: {len(arrays)} positional "
            f"arrays stored, {len(variables)} expected (or shapes differ)"
        )
    for array, variable in zip(arrays, variables):
        variable.assign(array.astype(variable.dtype))


def _mismatches(stored: dict[str, np.ndarray], wanted: dict) -> str:
    """The missing, unexpected and mis-shaped weights as one line; empty if they all fit."""
    missing = [name for name in wanted if name not in stored]
    unexpected = [name for name in stored if name not in wanted]
    misshaped = [
        f"{name} {stored[name].shape} != {tuple(wanted[name].shape)}"
        for name in wanted
        if name in stored and stored[name].shape != tuple(wanted[name].shape)
    ]
    parts = [
        f"{label} {_first_few(found)}"
        for label, found in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", misshaped),
        )
        if found
    ]
    return "; ".join(parts)


def _first_few(names: list[str], shown: int = 3) -> str:
    listed = ", ".join(names[:shown])
    return f"{len(names)} ({listed}{', ...' if len(names) > shown else ''})"


def _tuples(values: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
