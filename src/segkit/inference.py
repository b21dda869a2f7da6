"""Running a trained model over image files: loading a model spec, and the prediction loop.

A *model spec* names what to run, in one of four forms:

* a run folder written by `segkit.train` (its ``best.keras`` and preprocessing),
* a ``.keras`` file,
* an ``.onnx`` file exported by `segkit.export` (runs on onnxruntime, no deep-learning
  backend needed),
* a registry name with shipped weights: ``"resunet"`` with ``weights="figshare"``, or
  ``"resunet.figshare"``.

Resizing lives in `segkit.resize`, thresholding in `segkit.masks`, pictures in
`segkit.visualize`; `to_mask`, `overlay`, `write_png`, `resize_nearest` and
`resize_probabilities` are re-exported here for code written against earlier versions.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit import data
from segkit._io import check_writable
from segkit.data.classes import default_names
from segkit.data.intensity import IntensityRange
from segkit.data.samples import find_image_file, image_files
from segkit.masks import to_mask
from segkit.progress import Progress
from segkit.resize import resize_image, resize_nearest, resize_probabilities
from segkit.runs import RunFolder, load_keras
from segkit.visualize import label_overlay, overlay, write_png

ONNX_METADATA_KEY = "segkit.preprocessing"
#: ONNX metadata of an int8 file: how `segkit.export` quantized it and the Dice it measured.
ONNX_QUANTIZATION_KEY = "segkit.quantization"
#: What `load_model` can run a Keras model in.
PRECISIONS = ("float32", "bfloat16")

__all__ = [
    "ONNX_METADATA_KEY",
    "Segmenter",
    "image_files",
    "load_model",
    "names_a_path",
    "overlay",
    "predict",
    "resize_nearest",
    "resize_probabilities",
    "to_mask",
    "write_png",
]


@dataclass
class Segmenter:
    """A model ready to segment images, with the preprocessing it was trained with.

    Attributes:
        run: a function from a float32 batch ``(B, H, W, C)`` to probabilities ``(B, H, W, K)``.
        prep: how images are brought to the model's input.
        name: where the model came from, for reports.
        network: the Keras model, or None for an ONNX model.
        threshold: the probability above which a pixel is foreground, unless a caller says
            otherwise (shipped weights carry their own; 0.5 elsewhere).
        precision: what the model computes in: ``"float32"``, ``"bfloat16"`` (a Keras model in
            bfloat16, outputs float32) or ``"int8"`` (an ONNX file quantized by `segkit.export`).
        intensity: the intensity range of the training images, where the model records one
            (run folders and shipped weights), to notice inputs unlike them.
        class_names: the classes of a multi-class model, index = output channel, where the
            model records them (run folders); None otherwise.
    """

    run: object
    prep: data.Preprocessing
    name: str
    network: object = None
    threshold: float = 0.5
    precision: str = "float32"
    intensity: IntensityRange | None = None
    class_names: tuple[str, ...] | None = None

    def unusual(self, image: np.ndarray) -> str | None:
        """How a ``uint8`` image lies outside the training images' intensities, or None."""
        if self.intensity is None:
            return None
        return self.intensity.outside(resize_image(image, self.prep.size))

    def predict(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(B, H, W, K)`` at the model's size for ``uint8 (H, W, C)`` images of
        any size (each is resized and normalised as the model was trained)."""
        batch = np.stack(
            [data.normalize(resize_image(i, self.prep.size), self.prep) for i in images]
        )
        return np.asarray(self.run(batch), dtype=np.float32)

    def probabilities(self, paths: Sequence[str | Path], batch_size: int = 8) -> Iterator:
        """Yield ``(path, image, probabilities)`` per file: the ``uint8`` image as read and the
        ``(H, W, K)`` probabilities at the image's original size."""
        paths = list(paths)
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            images = [data.read_image(p, self.prep.channels) for p in chunk]
            for path, image, probs in zip(chunk, images, self.predict(images)):
                yield Path(path), image, resize_probabilities(probs, image.shape[:2])


def _class_names(segmenter: Segmenter, channels: int) -> tuple[str, ...] | None:
    """A multi-class model's class names (its own, else ``background, class_1, ...``)."""
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
) -> Segmenter:
    """Load a model spec (see the module docstring) as a `Segmenter`.

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
            for an ONNX model or on a CPU without native bfloat16.
    """
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
    segmenter = _keras_segmenter(network, prep, f"{name}.{tag}", header["threshold"], precision)
    if "intensity" in header:
        segmenter.intensity = IntensityRange.from_dict(header["intensity"])
    return segmenter


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
    network, prep: data.Preprocessing, name: str, threshold=0.5, precision: str = "float32"
) -> Segmenter:
    if precision == "bfloat16":
        network = _in_bfloat16(network)

    def run(batch):
        return network.predict_on_batch(batch)

    return Segmenter(run, prep, name, network, threshold, precision)


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
    return Segmenter(run, prep, str(path), precision=precision)


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


def predict(
    model: str | Path | Segmenter,
    inputs: Iterable[str | Path],
    out: str | Path,
    *,
    weights: str | None = None,
    threshold: float | None = None,
    batch_size: int = 8,
    probabilities: bool = False,
    overlays: bool = False,
    true_masks: str | Path | None = None,
    random_weights: bool = False,
    progress: bool = False,
    precision: str = "float32",
) -> list[Path]:
    """Segment image files and write a mask PNG per image at the image's original size.

    Args:
        model: a model spec (see the module docstring) or a loaded `Segmenter`.
        inputs: image files and folders of images.
        out: output folder; gets ``<name>_mask.png`` per input image: 0/255 from a binary
            model, the class index ``0..K-1`` (a label map) from a multi-class one.
        weights: weights tag when ``model`` is a registry name.
        threshold: probability above which a pixel is foreground; None takes the model's own
            (shipped weights carry one; 0.5 elsewhere).
        batch_size: images per forward pass.
        probabilities: also write ``<name>_prob.png``, the probability scaled to 0-255
            (multi-class: ``<name>_prob_<class>.png`` per foreground class).
        overlays: also write ``<name>_overlay.png``: the image with the predicted outline in
            red (and the true one in green when ``true_masks`` is given), with a legend;
            multi-class: each class filled in its colour, true classes outlined in white, and
            a legend naming the classes.
        true_masks: folder of true masks named ``<name>_mask.png`` (or another image suffix),
            for the overlays; images without one get only the predicted outline.
        random_weights: allow a bare registry name, which means untrained weights (for
            testing a pipeline; the masks mean nothing).
        progress: show the count, rate and time left on standard error.
        precision: ``"bfloat16"`` runs a Keras model in bfloat16 (see `load_model`).

    Returns:
        The mask files written.
    """
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    files = image_files(inputs)
    segmenter = (
        model
        if isinstance(model, Segmenter)
        else load_model(model, weights, random_weights=random_weights, precision=precision)
    )
    threshold = segmenter.threshold if threshold is None else threshold
    out = check_writable(out)
    written = []
    shown = Progress(len(files), "images", "predict", enabled=progress)
    flagged = []
    for path, image, probs in segmenter.probabilities(files, batch_size):
        shown.update()
        if why := segmenter.unusual(image):
            flagged.append((path.name, why))
        mask = to_mask(probs, threshold)
        scale = 255 if probs.shape[-1] == 1 else 1
        mask_path = out / f"{path.stem}_mask.png"
        write_png(mask_path, (mask * scale).astype(np.uint8))
        written.append(mask_path)
        names = _class_names(segmenter, probs.shape[-1])
        if probabilities and names is None:
            write_png(out / f"{path.stem}_prob.png", np.rint(probs[..., 0] * 255).astype(np.uint8))
        elif probabilities:
            for k, name in enumerate(names[1:], start=1):
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
    warn_unusual(segmenter, flagged, len(files))
    return written
