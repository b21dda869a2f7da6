"""Running a trained model over image files: loading a model spec, and the prediction loop.

A *model spec* names what to run, in one of four forms:

* a run folder written by `segkit.train` (its ``best.keras`` and preprocessing),
* a ``.keras`` file,
* an ``.onnx`` file exported by `segkit.export` (runs on onnxruntime, no deep-learning
  backend needed),
* a registry name with shipped weights: ``"resunet"`` with ``weights="figshare"``, or
  ``"resunet.figshare"``.

How probabilities become masks is an `InferenceSettings`: the threshold, test-time
augmentation (TTA) and post-processing (`segkit.postprocess`). Shipped weights, tuned run folders
and ONNX files exported from either store their own, chosen on validation data
(`segkit.tuning`); `load_model` applies them unless ``defaults=False``. Without stored
defaults: threshold 0.5, no TTA, no post-processing.

```python
segmenter = segkit.load_model("resunet.figshare")           # its stored defaults
segmenter.settings                                          # InferenceSettings(threshold=...)
plain = segkit.load_model("resunet.figshare", defaults=False, tta="flips")
masks = [plain.to_mask(p) for p in plain.predict(images)]   # at the model's size
```

Resizing lives in `segkit.resize`, thresholding in `segkit.masks`, pictures in
`segkit.visualize`; `to_mask`, `overlay`, `write_png`, `resize_nearest` and
`resize_probabilities` are re-exported here for code written against earlier versions.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from segkit import data, ray_engine
from segkit._io import check_writable, write_json
from segkit.data.classes import Regions, default_names
from segkit.data.intensity import IntensityRange
from segkit.data.samples import find_image_file, image_files
from segkit.masks import to_mask
from segkit.postprocess import PostProcessing
from segkit.postprocess import apply as postprocess_mask
from segkit.progress import Progress, note
from segkit.resize import resize_image, resize_nearest, resize_probabilities
from segkit.runs import RunFolder, load_keras
from segkit.visualize import label_overlay, overlay, write_label_png, write_png

ONNX_METADATA_KEY = "segkit.preprocessing"
#: ONNX metadata of an int8 file: how `segkit.export` quantized it and the Dice it measured.
ONNX_QUANTIZATION_KEY = "segkit.quantization"
#: ONNX metadata of the inference defaults (an `InferenceSettings` as JSON) a file carries.
ONNX_INFERENCE_KEY = "segkit.inference"
#: ONNX metadata of the training images' intensity range (`IntensityRange.to_dict`), so that
#: `Segmenter.unusual` makes the same check whatever runs the network.
ONNX_INTENSITY_KEY = "segkit.intensity"
#: ONNX metadata of a region model: its regions' names and labels, so masks are painted, not
#: taken as the most probable channel.
ONNX_REGIONS_KEY = "segkit.regions"
#: What `load_model` can run a Keras model in.
PRECISIONS = ("float32", "bfloat16")
#: The file in a run folder that holds its tuned inference defaults (none until tuned).
RUN_DEFAULTS_FILE = "inference.json"
#: Test-time augmentation settings, and the symmetries of the square each averages over, as
#: (quarter turns, mirrored): a copy is mirrored left-right (if mirrored), then turned
#: anticlockwise. "flips" are the image, its left-right and up-down mirror images (a mirrored
#: half turn) and both mirrors at once (a half turn).
TTA_TRANSFORMS = {
    "none": ((0, False),),
    "flips": ((0, False), (0, True), (2, False), (2, True)),
    "dihedral": tuple((turns, mirrored) for mirrored in (False, True) for turns in range(4)),
}
TTA_MODES = tuple(TTA_TRANSFORMS)
#: Transformed copies run together in one call at least, however few images a batch holds.
TTA_CHUNK = 8

__all__ = [
    "ONNX_INFERENCE_KEY",
    "ONNX_INTENSITY_KEY",
    "ONNX_METADATA_KEY",
    "ONNX_REGIONS_KEY",
    "InferenceSettings",
    "Segmenter",
    "image_files",
    "load_model",
    "segmenter_for",
    "names_a_path",
    "overlay",
    "predict",
    "resize_nearest",
    "resize_probabilities",
    "to_mask",
    "write_png",
]


def _setting(default, help: str, **cli):  # noqa: A002  (click's own word for it)
    """An `InferenceSettings` field with the help (and CLI details: ``choices``, ``metavar``)
    of the command-line option generated from it."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class InferenceSettings:
    """How a model's probabilities become masks.

    The one source of ``--threshold``, ``--tta`` and ``--postprocess`` on ``segkit predict``
    and ``segkit evaluate``, and of ``--threshold`` on ``segkit explain`` (names, choices and
    help come from these fields).

    Attributes:
        threshold: probability above which a pixel is foreground, for one-channel models (a
            multi-class model gives each pixel its most probable class).
        tta: test-time augmentation: ``"none"``; ``"flips"``, the mean of the probabilities of
            the image and its three mirror images (left-right, up-down, both); ``"dihedral"``,
            the mean over the 8 symmetries of the square (each quarter turn, mirrored or not;
            square inputs only). Each copy's prediction is turned back before the mean, and
            the copies of a batch run through the model together (see `TTA_TRANSFORMS`).
        postprocess: `segkit.postprocess.PostProcessing` rules, or their text
            (``"largest,fill-holes"``), run on each mask.
    """

    threshold: float = _setting(
        0.5, "Foreground above this probability (one-channel models).", metavar="FLOAT"
    )
    tta: str = _setting(
        "none",
        "Test-time augmentation: the mean of the probabilities of the image and its mirror "
        "images (flips: 4 copies) or its mirror images and quarter turns (dihedral: 8).",
        choices=TTA_MODES,
    )
    postprocess: PostProcessing = _setting(
        PostProcessing(),
        "Post-processing: none, or a comma-separated list of largest (keep the largest "
        "region), min-size=N (drop regions under N pixels at the model's input size), "
        "fill-holes and at-least-one (never an empty mask: keep the region around the most "
        "probable pixel).",
        metavar="RULES",
    )

    def __post_init__(self):
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)):
            raise ValueError(f"threshold must be a number between 0 and 1, got {self.threshold!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
        if self.tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {self.tta!r}")
        # Frozen: set the converted values the way dataclasses do.
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "postprocess", PostProcessing.parse(self.postprocess))

    def replace(self, **changes) -> InferenceSettings:
        """These settings with some changed; a change of None leaves that setting as it is."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        """The settings as JSON values (post-processing as its text)."""
        return {"threshold": self.threshold, "tta": self.tta, "postprocess": str(self.postprocess)}

    @classmethod
    def from_dict(cls, record: dict) -> InferenceSettings:
        """Settings from `to_dict`'s JSON; a missing setting takes its default.

        Raises:
            ValueError: a setting that does not exist, or a bad value, naming it.
        """
        unknown = sorted(set(record) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown inference settings {unknown}")
        return cls(**record)

    def __str__(self) -> str:
        return f"threshold {self.threshold:g}, TTA {self.tta}, post-processing {self.postprocess}"


@dataclass
class Segmenter:
    """A model ready to segment images, with the preprocessing it was trained with.

    Attributes:
        run: a function from a float32 batch ``(B, H, W, C)`` to probabilities ``(B, H, W, K)``.
        prep: how images are brought to the model's input.
        name: where the model came from, for reports.
        network: the Keras model, or None for an ONNX model.
        settings: how probabilities become masks (`InferenceSettings`): the model's stored
            defaults unless the caller chose others (see `load_model`).
        precision: what the model computes in: ``"float32"``, ``"bfloat16"`` (a Keras model in
            bfloat16, outputs float32) or ``"int8"`` (an ONNX file quantized by `segkit.export`).
        intensity: the intensity range of the training images, where the model records one
            (run folders and shipped weights), to notice inputs unlike them.
        class_names: the classes of a multi-class model, index = output channel, where the
            model records them (run folders); None otherwise. For a region model: the classes
            of the label maps its regions are made of.
        regions: the regions of a region model (`segkit.data.classes.Regions`), one output
            channel each, where the model records them (run folders); None otherwise.
        stored: the inference defaults stored with the model (shipped weights, a tuned run
            folder, an ONNX file exported from either), whether or not they apply.
        source: the `load_model` arguments that loaded it (spec, weights, random_weights,
            precision), so that other processes can load it again (`loader`); None for a
            segmenter made in Python.
    """

    run: object
    prep: data.Preprocessing
    name: str
    network: object = None
    settings: InferenceSettings = InferenceSettings()
    precision: str = "float32"
    intensity: IntensityRange | None = None
    class_names: tuple[str, ...] | None = None
    regions: Regions | None = None
    stored: InferenceSettings = InferenceSettings()
    source: dict | None = None

    @property
    def threshold(self) -> float:
        """The settings' threshold."""
        return self.settings.threshold

    def with_settings(self, *, defaults: bool = True, **changes) -> Segmenter:
        """A copy with some settings changed (None: unchanged); ``defaults=False`` starts from
        `InferenceSettings` (threshold 0.5, no TTA, no post-processing) instead of the
        current settings."""
        base = self.settings if defaults else InferenceSettings()
        return replace(self, settings=base.replace(**changes))

    def loader(self) -> functools.partial:
        """A picklable function that loads this model again, with these settings, in another
        process (a Ray worker).

        Raises:
            ValueError: a segmenter `load_model` did not load.
        """
        if self.source is None:
            raise ValueError(
                f"{self.name} was made in Python, not loaded from a model spec: engine 'ray' "
                "loads the model on each worker, so give a spec (name, run folder, file)"
            )
        return functools.partial(
            load_model, **self.source, defaults=False, **self.settings.to_dict()
        )

    def unusual(self, image: np.ndarray) -> str | None:
        """How a ``uint8`` image lies outside the training images' intensities, or None."""
        if self.intensity is None:
            return None
        return self.intensity.outside(resize_image(image, self.prep.size))

    def cost(self, per: str = "image") -> str:
        """The settings that apply, which of them are stored with the model, and what they
        cost: ``"resunet.figshare: threshold 0.3, TTA dihedral, post-processing largest
        (stored with the model: threshold, TTA, post-processing); 8 network passes per image;
        --tta none is about 8x faster"``."""
        plain, labels = InferenceSettings(), {"tta": "TTA", "postprocess": "post-processing"}
        stored = [
            labels.get(spec.name, spec.name)
            for spec in fields(InferenceSettings)
            if getattr(self.settings, spec.name) == getattr(self.stored, spec.name)
            and getattr(self.stored, spec.name) != getattr(plain, spec.name)
        ]
        text = f"{self.name}: {self.settings}"
        if stored:
            text += f" (stored with the model: {', '.join(stored)})"
        passes = len(TTA_TRANSFORMS[self.settings.tta])
        text += f"; {passes} network pass{'es' if passes > 1 else ''} per {per}"
        if passes > 1:
            text += f"; --tta none is about {passes}x faster"
        return text

    def predict(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(B, H, W, K)`` at the model's size for ``uint8 (H, W, C)`` images of
        any size (each is resized and normalised as the model was trained), averaged over the
        settings' test-time augmentation."""
        return self.predict_tta(images, (self.settings.tta,))[self.settings.tta]

    def predict_tta(self, images: Sequence[np.ndarray], modes: Sequence[str]) -> dict:
        """Probabilities as `predict` gives them under each test-time augmentation in
        ``modes``, from one pass per transform: ``"dihedral"`` holds the transforms of
        ``"flips"``, which holds the image itself.

        Returns:
            ``{mode: (B, H, W, K) probabilities}``.

        Raises:
            ValueError: an unknown mode, or quarter turns of a model whose input is not square.
        """
        unknown = [mode for mode in modes if mode not in TTA_TRANSFORMS]
        if unknown:
            raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {unknown[0]!r}")
        batch = np.stack(
            [data.normalize(resize_image(i, self.prep.size), self.prep) for i in images]
        )
        transforms = list(dict.fromkeys(t for mode in modes for t in TTA_TRANSFORMS[mode]))
        height, width = batch.shape[1:3]
        if height != width and any(turns % 2 for turns, _ in transforms):
            raise ValueError(
                f"tta 'dihedral' turns images by quarter turns, which needs a square input; "
                f"{self.name} takes {height}x{width}: use --tta flips (tta='flips' in Python)"
            )
        copies = np.concatenate([_transformed(batch, *t) for t in transforms])
        chunk = max(len(batch), TTA_CHUNK)
        outputs = np.concatenate(
            [
                np.asarray(self.run(copies[start : start + chunk]), dtype=np.float32)
                for start in range(0, len(copies), chunk)
            ]
        )
        turned_back = {
            t: _turned_back(outputs[i * len(batch) : (i + 1) * len(batch)], *t)
            for i, t in enumerate(transforms)
        }
        return {
            mode: np.mean([turned_back[t] for t in TTA_TRANSFORMS[mode]], axis=0, dtype=np.float32)
            for mode in modes
        }

    def to_mask(self, probabilities: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """The ``uint8 (H, W)`` mask of ``(H, W, K)`` probabilities, at the model's size or
        resized to an image's own: thresholded (one channel; at ``threshold`` if given, else
        the settings') or each pixel's most probable class, then post-processed as the
        settings say (``min_size`` scaled from the model's input size to the mask's)."""
        threshold = self.threshold if threshold is None else threshold
        regions = self.regions.labels if self.regions else None  # painted as nnU-Net paints
        mask = to_mask(probabilities, threshold, regions)
        rules = self.settings.postprocess
        if rules:
            height, width = self.prep.size
            rules = rules.scaled(mask.size / (height * width))
            mask = postprocess_mask(mask, rules, probabilities, regions)
        return mask

    def probabilities(self, paths: Sequence[str | Path], batch_size: int = 8) -> Iterator:
        """Yield ``(path, image, probabilities)`` per file: the ``uint8`` image as read and the
        ``(H, W, K)`` probabilities at the image's original size."""
        paths = list(paths)
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            images = [data.read_image(p, self.prep.channels) for p in chunk]
            for path, image, probs in zip(chunk, images, self.predict(images)):
                yield Path(path), image, resize_probabilities(probs, image.shape[:2])


def _transformed(batch: np.ndarray, turns: int, mirrored: bool) -> np.ndarray:
    """``(B, H, W, C)`` images mirrored left-right (if ``mirrored``), then turned ``turns``
    quarter turns anticlockwise."""
    if mirrored:
        batch = batch[:, :, ::-1]
    return np.rot90(batch, turns, axes=(1, 2))


def _turned_back(batch: np.ndarray, turns: int, mirrored: bool) -> np.ndarray:
    """The inverse of `_transformed`: turned back, then mirrored back."""
    batch = np.rot90(batch, -turns, axes=(1, 2))
    return batch[:, :, ::-1] if mirrored else batch


def _class_names(segmenter: Segmenter, channels: int) -> tuple[str, ...] | None:
    """A multi-class model's class names (its own, else ``background, class_1, ...``); a region
    model's label-map classes."""
    if segmenter.regions:
        return tuple(segmenter.class_names)
    if channels == 1:
        return None
    if segmenter.class_names and len(segmenter.class_names) == channels:
        return tuple(segmenter.class_names)
    return default_names(channels)


def load_model(
    spec: str | Path,
    weights: str | None = None,
    *,
    random_weights: bool = False,
    precision: str = "float32",
    defaults: bool = True,
    threshold: float | None = None,
    tta: str | None = None,
    postprocess: str | PostProcessing | None = None,
) -> Segmenter:
    """Load a model spec (see the module docstring) as a `Segmenter`.

    Its `InferenceSettings` are the model's stored defaults: those of shipped weights, of a run
    folder that was tuned (its ``inference.json``) and of an ONNX file exported from either;
    a model without any gets `InferenceSettings()` (threshold 0.5, no TTA, no
    post-processing), as does every model with ``defaults=False``. ``threshold``, ``tta`` and
    ``postprocess`` override single settings either way.

    ``precision="bfloat16"`` runs a Keras model in bfloat16 (weights kept in float32, outputs
    float32): faster on CPUs that compute bfloat16 natively (AVX-512 BF16 or AMX; see
    `segkit.backend.native_bfloat16`), and refused elsewhere, where it is emulated and several
    times slower than float32. ONNX models take their precision from the file (`segkit.export`
    with ``quantize="int8"``).

    A bare registry name (``"resunet"`` without a weights tag) means untrained, random weights:
    it is refused unless ``random_weights`` is True, so nobody segments with noise by mistake.

    Raises:
        FileNotFoundError: a path that does not exist, or a run folder without a checkpoint.
        KeyError: an unknown model name or weights tag.
        ValueError: a file that is not a Keras or ONNX model; an unknown precision, bfloat16
            for an ONNX model or on a CPU without native bfloat16; a bad setting.
    """
    changes = {"threshold": threshold, "tta": tta, "postprocess": postprocess}
    InferenceSettings().replace(**changes)  # a bad setting fails before a model loads
    segmenter = _load(spec, weights, random_weights, precision)
    segmenter.stored = segmenter.settings
    segmenter.settings = (segmenter.settings if defaults else InferenceSettings()).replace(
        **changes
    )
    # Absolute, so that a worker whose folder differs finds the same file.
    where = str(Path(spec).resolve()) if names_a_path(spec) else str(spec)
    segmenter.source = {
        "spec": where,
        "weights": weights,
        "random_weights": random_weights,
        "precision": precision,
    }
    return segmenter


def _load(spec: str | Path, weights: str | None, random_weights: bool, precision: str):
    """The `Segmenter` of a model spec, with the model's stored inference defaults."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    path = Path(spec)
    if path.suffix == ".onnx":
        if precision != "float32":
            raise ValueError(
                f"precision {precision!r} is for Keras models; {path} is an ONNX model, whose "
                "precision is fixed at export (segkit export --quantize int8)"
            )
        return _load_onnx(path)
    if precision == "bfloat16":
        _check_native_bfloat16()
    if path.is_dir():
        run = RunFolder(path)
        segmenter = _keras_segmenter(
            run.load_best(), run.preprocessing(), str(path), precision=precision
        )
        segmenter.intensity = run.intensity()
        segmenter.class_names = tuple(run.config().class_names) or None
        segmenter.regions = run.config().region_set()
        segmenter.settings = run_defaults(path) or InferenceSettings()
        return segmenter
    if path.suffix == ".keras":
        network = load_keras(path)
        return _keras_segmenter(network, _prep_for(network), str(path), precision=precision)
    if names_a_path(spec):
        raise FileNotFoundError(
            f"model {spec} is neither a run folder, a .keras file nor an .onnx file"
        )
    return _load_registered(str(spec), weights, random_weights, precision)


def names_a_path(spec: str | Path) -> bool:
    """Whether a model spec names a file or folder (a run folder, ``.keras`` or ``.onnx``
    file) rather than a registry name such as ``"resunet.figshare"``."""
    path = Path(spec)
    return (
        path.suffix in (".keras", ".onnx")
        or path.exists()
        or any(sep in str(spec) for sep in ("/", "\\"))
    )


def _load_registered(
    spec: str, weights: str | None, random_weights: bool, precision: str = "float32"
) -> Segmenter:
    import segkit
    from segkit.models import pretrained

    name, tag = segkit.models.split_name(spec)
    tag = tag or weights
    if tag is None and not random_weights:
        segkit.models.builder(name)  # an unknown name is the clearer error
        shipped = ", ".join(pretrained.available(name)) or f"none ship for {name!r}"
        raise ValueError(
            f"model {name!r} names an architecture, not trained weights (shipped: {shipped}); "
            "give shipped weights, a run folder or a .keras file, or --random-weights to run "
            "it untrained on purpose"
        )
    network = segkit.models.get(spec, weights=weights)
    if tag is None:
        return _keras_segmenter(network, _prep_for(network), name, precision=precision)
    header = pretrained.pretrained_header(name, tag)
    prep = data.Preprocessing(**header["preprocessing"])
    segmenter = _keras_segmenter(network, prep, f"{name}.{tag}", precision=precision)
    segmenter.settings = stored_settings(header)
    if "intensity" in header:
        segmenter.intensity = IntensityRange.from_dict(header["intensity"])
    return segmenter


def stored_settings(header: dict) -> InferenceSettings:
    """The inference defaults a weights file's header stores (see
    `segkit.models.pretrained.read_header`): its ``inference`` field, or, in files written
    before it existed, the header's threshold with no TTA and no post-processing."""
    if "inference" in header:
        return InferenceSettings.from_dict(header["inference"])
    return InferenceSettings(threshold=header.get("threshold", 0.5))


def run_defaults(run_dir: str | Path) -> InferenceSettings | None:
    """A run folder's tuned inference defaults (its ``inference.json``), or None before it was
    tuned.

    Raises:
        ValueError: an ``inference.json`` that does not hold settings, naming it.
    """
    path = Path(run_dir) / RUN_DEFAULTS_FILE
    if not path.is_file():
        return None
    try:
        return InferenceSettings.from_dict(json.loads(path.read_text())["settings"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} does not hold inference settings: {exc}") from None


def save_run_defaults(run_dir: str | Path, settings: InferenceSettings, **record) -> Path:
    """Write a run folder's inference defaults, which `load_model` then applies, with what
    chose them (``record``: JSON values, e.g. the validation table); returns the file."""
    path = Path(run_dir) / RUN_DEFAULTS_FILE
    write_json(path, {"settings": settings.to_dict(), **record})
    return path


def warn_unusual(segmenter: Segmenter, flagged: list[tuple[str, str]], total: int) -> None:
    """One warning naming the inputs that look unlike the model's training images."""
    if not flagged:
        return
    shown = "; ".join(f"{name}: {why}" for name, why in flagged[:3])
    more = f"; and {len(flagged) - 3} more" if len(flagged) > 3 else ""
    warnings.warn(
        f"{len(flagged)} of {total} inputs look unlike the images {segmenter.name} was trained "
        f"on ({shown}{more}): check their masks by eye",
        UserWarning,
        stacklevel=3,
    )


def _prep_for(network) -> data.Preprocessing:
    height, width, channels = network.input_shape[1:]
    return data.Preprocessing(size=(height or 256, width or 256), channels=channels)


def _keras_segmenter(
    network, prep: data.Preprocessing, name: str, precision: str = "float32"
) -> Segmenter:
    if precision == "bfloat16":
        network = _in_bfloat16(network)

    def run(batch):
        return network.predict_on_batch(batch)

    return Segmenter(run, prep, name, network, precision=precision)


def _check_native_bfloat16() -> None:
    from segkit.backend import native_bfloat16

    if not native_bfloat16():
        raise ValueError(
            "precision 'bfloat16' needs bfloat16 computed natively (a CPU with AVX-512 BF16 or "
            "AMX, with TensorFlow's oneDNN on; or a GPU); here it would be emulated, several "
            "times slower than float32"
        )


def _in_bfloat16(network):
    """A copy of ``network`` that computes in bfloat16, keeping float32 weights and outputs.

    Each layer is rebuilt with Keras' ``mixed_bfloat16`` policy, except the output layers,
    so the probabilities stay float32 (bfloat16 holds 2-3 significant digits).
    """
    import keras

    outputs = set(network.output_names)

    def rebuild(layer):
        config = layer.get_config()
        if layer.name not in outputs:
            config["dtype"] = "mixed_bfloat16"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(network, clone_function=rebuild)
    copy.set_weights(network.get_weights())
    return copy


def _load_onnx(path: Path) -> Segmenter:
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(
            "running .onnx models needs onnxruntime: pip install 'segkit[onnx]'"
        ) from None
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    # The fastest safe settings: every graph optimisation (operator fusion, and int8 kernels
    # for quantized files), and one thread per core this process may use: more threads than
    # cores only contend, and onnxruntime's own default counts cores the process cannot use.
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = _physical_cores()
    try:
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise ValueError(f"cannot load ONNX model {path}: {exc}") from None
    metadata = session.get_modelmeta().custom_metadata_map
    if ONNX_METADATA_KEY in metadata:
        prep = data.Preprocessing(**json.loads(metadata[ONNX_METADATA_KEY]))
    else:
        _, height, width, channels = session.get_inputs()[0].shape
        sizes = [s if isinstance(s, int) else 256 for s in (height, width)]
        prep = data.Preprocessing(size=tuple(sizes), channels=channels)
    input_name = session.get_inputs()[0].name

    def run(batch):
        return session.run(None, {input_name: batch.astype(np.float32)})[0]

    precision = "int8" if ONNX_QUANTIZATION_KEY in metadata else "float32"
    settings = InferenceSettings()
    if ONNX_INFERENCE_KEY in metadata:
        settings = InferenceSettings.from_dict(json.loads(metadata[ONNX_INFERENCE_KEY]))
    segmenter = Segmenter(run, prep, str(path), settings=settings, precision=precision)
    if ONNX_INTENSITY_KEY in metadata:
        segmenter.intensity = IntensityRange.from_dict(json.loads(metadata[ONNX_INTENSITY_KEY]))
    if ONNX_REGIONS_KEY in metadata:
        record = json.loads(metadata[ONNX_REGIONS_KEY])
        segmenter.regions = Regions(
            tuple(record["names"]), tuple(tuple(labels) for labels in record["labels"])
        )
        segmenter.class_names = tuple(record["classes"])  # the painted label map's classes
    return segmenter


def _physical_cores() -> int:
    """Cores this process may run on, the hyper-threads of one core counted once."""
    if not hasattr(os, "sched_getaffinity"):  # macOS and Windows
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in os.sched_getaffinity(0):
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            cores.add((package, (topology / "core_id").read_text().strip()))
        except OSError:  # no topology listed: count the CPU as a core
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def segmenter_for(
    model: str | Path | Segmenter,
    weights: str | None = None,
    *,
    random_weights: bool = False,
    precision: str = "float32",
    defaults: bool = True,
    **changes,
) -> Segmenter:
    """A loaded `Segmenter` with ``changes`` (threshold, tta, postprocess; None keeps the
    model's) applied, whether ``model`` is already loaded or a spec for `load_model`."""
    if isinstance(model, Segmenter):
        return model.with_settings(defaults=defaults, **changes)
    return load_model(
        model,
        weights,
        random_weights=random_weights,
        precision=precision,
        defaults=defaults,
        **changes,
    )


def predict(
    model: str | Path | Segmenter,
    inputs: Iterable[str | Path],
    out: str | Path,
    *,
    weights: str | None = None,
    threshold: float | None = None,
    tta: str | None = None,
    postprocess: str | PostProcessing | None = None,
    defaults: bool = True,
    batch_size: int = 8,
    probabilities: bool = False,
    overlays: bool = False,
    true_masks: str | Path | None = None,
    random_weights: bool = False,
    progress: bool = False,
    precision: str = "float32",
    engine: str = "local",
    ray: ray_engine.RayOptions | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Segment image files and write a mask PNG per image at the image's original size.

    Args:
        model: a model spec (see the module docstring) or a loaded `Segmenter`.
        inputs: image files and folders of images.
        out: output folder; gets ``<name>_mask.png`` per input image: 0/255 from a binary
            model; from a multi-class one a label map, a palette PNG whose pixel values are
            the class indices ``0..K-1`` and whose palette shows them in their overlay colours
            (`segkit.visualize.write_label_png`).
        weights: weights tag when ``model`` is a registry name.
        threshold: probability above which a pixel is foreground; None takes the model's
            (see `InferenceSettings`).
        tta: test-time augmentation, ``"none"``, ``"flips"`` or ``"dihedral"``; None takes
            the model's.
        postprocess: post-processing rules (`segkit.postprocess.PostProcessing` or its text,
            e.g. ``"largest,fill-holes"``); None takes the model's.
        defaults: False ignores the model's stored inference defaults (see `load_model`).
        batch_size: images per forward pass (the ray engine runs each image on its own).
        probabilities: also write ``<name>_prob.png``, the probability scaled to 0-255
            (multi-class: ``<name>_prob_<class>.png`` per foreground class).
        overlays: also write ``<name>_overlay.png``: the image with the predicted outline in
            orange (and the true one in sky blue, with the image's Dice, when ``true_masks``
            is given), with a legend; multi-class: each class filled in its colour, true
            classes outlined in white, and a legend naming the classes.
        true_masks: folder of true masks named ``<name>_mask.png`` (or another image suffix),
            for the overlays; images without one get only the predicted outline.
        random_weights: allow a bare registry name, which means untrained weights (for
            testing a pipeline; the masks mean nothing).
        progress: show the count, rate and time left on standard error.
        precision: ``"bfloat16"`` runs a Keras model in bfloat16 (see `load_model`).
        engine: ``"local"`` runs here; ``"ray"`` runs on a Ray cluster (`segkit.ray_engine`),
            each worker loading the model once, and writes ``ray-summary.json`` (each file's
            status and time) to ``out``.
        ray: the cluster and worker pool of the ray engine (`segkit.ray_engine.RayOptions`;
            default: a local Ray runtime, a worker per core).
        overwrite: the ray engine skips images whose mask exists (it is written last, so a
            mask means the image's outputs are complete) unless this is True; the local engine
            always writes.

    Returns:
        The mask files written (the ray engine: also those skipped as complete).
    """
    changes = {"threshold": threshold, "tta": tta, "postprocess": postprocess}
    InferenceSettings().replace(**changes)  # a bad setting fails before any work
    ray_engine.check_engine(engine)
    files = image_files(inputs)
    options = {"probabilities": probabilities, "overlays": overlays, "true_masks": true_masks}
    segmenter = segmenter_for(
        model,
        weights,
        random_weights=random_weights,
        precision=precision,
        defaults=defaults,
        **changes,
    )
    if engine == "ray":  # loaded here too, so that a bad spec fails here, in one line
        return _predict_on_ray(segmenter, files, out, options, ray, overwrite, progress)
    out = check_writable(out)
    written = []
    note(f"predict: {segmenter.cost()}", enabled=progress)
    shown = Progress(len(files), "images", "predict", enabled=progress)
    flagged = []
    for path, image, probs in segmenter.probabilities(files, batch_size):
        shown.update()
        if why := segmenter.unusual(image):
            flagged.append((path.name, why))
        written.append(write_prediction(segmenter, path, image, probs, out, **options))
    warn_unusual(segmenter, flagged, len(files))
    return written


def write_prediction(
    segmenter: Segmenter,
    path: Path,
    image: np.ndarray,
    probs: np.ndarray,
    out: Path,
    *,
    probabilities: bool = False,
    overlays: bool = False,
    true_masks: str | Path | None = None,
) -> Path:
    """Write one image's outputs (see `predict`) from its probabilities at its own size; the
    mask last, so that a mask on disk means the image is done. Returns the mask file."""
    mask = segmenter.to_mask(probs)
    names = _class_names(segmenter, probs.shape[-1])
    if probabilities and names is None:
        write_png(out / f"{path.stem}_prob.png", np.rint(probs[..., 0] * 255).astype(np.uint8))
    elif probabilities:
        # Each region's channel, or each foreground class's.
        named = segmenter.regions.names if segmenter.regions else names[1:]
        first = 0 if segmenter.regions else 1
        for k, name in enumerate(named, start=first):
            scaled = np.rint(probs[..., k] * 255).astype(np.uint8)
            write_png(out / f"{path.stem}_prob_{name}.png", scaled)
    if overlays:
        true = None
        found = true_masks and find_image_file(Path(true_masks), [f"{path.stem}_mask"])
        if found:
            # Label maps are read as such; binary masks (also those a tumour-type model
            # learnt from, whose class comes from a label file) as binary.
            label_maps = names is not None and segmenter.prep.class_source == "mask"
            true = data.read_mask_file(found, len(names) if label_maps else None)
            if names is not None and not label_maps:
                true = true.astype(bool)
        if names is None:
            picture = overlay(image, mask, true, legend=True)
        else:
            picture = label_overlay(image, mask, names, true)
        write_png(out / f"{path.stem}_overlay.png", picture)
    mask_path = out / f"{path.stem}_mask.png"
    if probs.shape[-1] == 1 and not segmenter.regions:
        write_png(mask_path, (mask * 255).astype(np.uint8))
    else:
        write_label_png(mask_path, mask)  # a palette PNG: class indices that a viewer shows
    return mask_path


def _predict_image(segmenter: Segmenter, unit: dict) -> str | None:
    """The ray engine's work on one image: writes its outputs; returns how it looks unlike the
    training images, or None."""
    path = Path(unit["path"])
    [(_, image, probs)] = segmenter.probabilities([path])
    write_prediction(segmenter, path, image, probs, Path(unit["out"]), **unit["options"])
    return segmenter.unusual(image)


def _predict_on_ray(segmenter, files, out, options, ray, overwrite, progress) -> list[Path]:
    """`predict` on the ray engine: an image per unit, complete masks skipped."""
    out = check_writable(out).resolve()
    masks = [out / f"{Path(f).stem}_mask.png" for f in files]
    todo = [i for i, mask in enumerate(masks) if overwrite or not mask.is_file()]
    if options["true_masks"] is not None:
        options = {**options, "true_masks": str(Path(options["true_masks"]).resolve())}
    units = [
        {"path": str(Path(files[i]).resolve()), "out": str(out), "options": options} for i in todo
    ]
    outcomes, run = ray_engine.map_units(
        units,
        segmenter.loader(),
        _predict_image,
        ray or ray_engine.RayOptions(),
        what="images",
        progress=progress,
    )
    records = ray_engine.file_records(files, masks, todo, outcomes)
    ray_engine.remove_leftovers(out)
    summary = ray_engine.write_summary(
        out / ray_engine.SUMMARY_FILE, run, records, model=segmenter.name
    )
    flagged = [
        (Path(files[i]).name, o["result"])
        for i, o in zip(todo, outcomes)
        if o["status"] == "done" and o["result"]
    ]
    warn_unusual(segmenter, flagged, len(todo))
    ray_engine.check_failures(summary, out / ray_engine.SUMMARY_FILE)
    return masks
