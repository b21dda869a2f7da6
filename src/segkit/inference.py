"""Running a trained model over image files: probabilities, masks and overlays.

A *model spec* names what to run, in one of four forms:

* a run folder written by `segkit.train` (its ``best.keras`` and preprocessing),
* a ``.keras`` file,
* an ``.onnx`` file exported by `segkit.export` (runs on onnxruntime, no deep-learning
  backend needed),
* a registry name with shipped weights: ``"resunet"`` with ``weights="figshare"``, or
  ``"resunet.figshare"``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from segkit import data
from segkit._io import atomic_path, check_writable
from segkit.data.samples import IMAGE_SUFFIXES
from segkit.evaluation import surface

ONNX_METADATA_KEY = "segkit.preprocessing"


@dataclass
class Segmenter:
    """A model ready to segment images, with the preprocessing it was trained with.

    Attributes:
        run: a function from a float32 batch ``(B, H, W, C)`` to probabilities ``(B, H, W, K)``.
        prep: how images are brought to the model's input.
        name: where the model came from, for reports.
        network: the Keras model, or None for an ONNX model.
    """

    run: object
    prep: data.Preprocessing
    name: str
    network: object = None

    def predict(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(B, H, W, K)`` at the model's size for ``uint8 (H, W, C)`` images of
        any size (each is resized and normalised as the model was trained)."""
        batch = np.stack(
            [data.normalize(data.resize_image(i, self.prep.size), self.prep) for i in images]
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


def resize_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a ``(H, W)`` mask to ``size`` (height, width)."""
    height, width = size
    if mask.shape == (height, width):
        return mask
    return np.asarray(Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST))


def resize_probabilities(probs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(H, W, K)`` probabilities to ``size`` (height, width)."""
    height, width = size
    if probs.shape[:2] == (height, width):
        return probs
    return np.stack(
        [
            np.asarray(
                Image.fromarray(probs[..., k]).resize((width, height), Image.Resampling.BILINEAR)
            )
            for k in range(probs.shape[-1])
        ],
        axis=-1,
    )


def to_mask(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``uint8 (H, W)`` mask: foreground where the probability exceeds ``threshold`` (one
    channel), or the most probable class (several channels)."""
    if probs.shape[-1] == 1:
        return (probs[..., 0] > threshold).astype(np.uint8)
    return np.argmax(probs, axis=-1).astype(np.uint8)


def load_model(spec: str | Path, weights: str | None = None) -> Segmenter:
    """Load a model spec (see the module docstring) as a `Segmenter`.

    Raises:
        FileNotFoundError: a path that does not exist, or a run folder without a checkpoint.
        KeyError: an unknown model name or weights tag.
        ValueError: a file that is not a Keras or ONNX model.
    """
    path = Path(spec)
    if path.suffix == ".onnx":
        return _load_onnx(path)
    if path.is_dir():
        return _load_run(path)
    if path.suffix == ".keras":
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} does not exist")
        network = _load_keras_file(path)
        return _keras_segmenter(network, _prep_for(network), str(path))
    if path.exists() or any(sep in str(spec) for sep in ("/", "\\")):
        raise FileNotFoundError(
            f"model {spec} is neither a run folder, a .keras file nor an .onnx file"
        )
    import segkit
    from segkit import weights as shipped

    network = segkit.models.get(str(spec), weights=weights)
    name, tag = segkit.models.split_name(str(spec))
    entry = shipped.PRETRAINED.get((name, tag or weights)) if (tag or weights) else None
    prep = data.Preprocessing(**entry.preprocessing) if entry else _prep_for(network)
    return _keras_segmenter(network, prep, f"{name}.{tag or weights}" if entry else name)


def _prep_for(network) -> data.Preprocessing:
    height, width, channels = network.input_shape[1:]
    return data.Preprocessing(size=(height or 256, width or 256), channels=channels)


def _keras_segmenter(network, prep: data.Preprocessing, name: str) -> Segmenter:
    def run(batch):
        return network.predict_on_batch(batch)

    return Segmenter(run, prep, name, network)


def _load_keras_file(path: Path):
    import keras

    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # zip, HDF5 and config errors all mean "not a usable model"
        raise ValueError(f"cannot load model file {path}: {exc}") from None


def _load_run(run_dir: Path) -> Segmenter:
    checkpoint = run_dir / "best.keras"
    config_path = run_dir / "config.json"
    if not checkpoint.exists() or not config_path.exists():
        raise FileNotFoundError(
            f"{run_dir} is not a finished training run (needs best.keras and config.json)"
        )
    config = json.loads(config_path.read_text())["config"]
    prep = data.Preprocessing(
        size=tuple(config["image_size"]), channels=config["channels"], normalize=config["normalize"]
    )
    return _keras_segmenter(_load_keras_file(checkpoint), prep, str(run_dir))


def _load_onnx(path: Path) -> Segmenter:
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(
            "running .onnx models needs onnxruntime: pip install 'segkit[onnx]'"
        ) from None
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
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

    return Segmenter(run, prep, str(path))


def image_files(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (their image files, not subfolders) into a sorted list.

    Mask files (``*_mask.*``) inside a folder are skipped: they are answers, not inputs.
    """
    import natsort

    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = [
                p
                for p in path.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_mask")
            ]
            files.extend(natsort.natsorted(found, key=str))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"input {path} does not exist")
    if not files:
        raise FileNotFoundError(f"no image files in {', '.join(map(str, inputs))}")
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen:
            # Their masks would both be written to <stem>_mask.png.
            raise ValueError(f"inputs {seen[path.stem]} and {path} share the name {path.stem!r}")
        seen[path.stem] = path
    return files


def overlay(image: np.ndarray, predicted: np.ndarray, true: np.ndarray | None = None) -> np.ndarray:
    """RGB picture of ``image`` with the predicted outline in red and the true one in green."""
    grey = image[..., 0] if image.ndim == 3 else image
    picture = np.repeat(grey[..., None], 3, axis=-1).astype(np.uint8)
    thick = ndimage.binary_dilation  # one pixel is hard to see on a 512 image
    if true is not None:
        if true.shape != grey.shape:
            raise ValueError(f"true mask is {true.shape}, but the image is {grey.shape}")
        picture[thick(surface(true.astype(bool)))] = (40, 220, 40)
    picture[thick(surface(predicted.astype(bool)))] = (230, 30, 30)
    return picture


def write_png(path: Path, array: np.ndarray) -> None:
    """Write a PNG atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def _true_mask(folder: Path, image: Path) -> np.ndarray | None:
    """The true mask ``<name>_mask.*`` of ``image`` in ``folder``, or None if there is none."""
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{image.stem}_mask{suffix}"
        if candidate.is_file():
            return data.read_mask_file(candidate)
    return None


def predict(
    model: str | Path | Segmenter,
    inputs: Iterable[str | Path],
    out: str | Path,
    *,
    weights: str | None = None,
    threshold: float = 0.5,
    batch_size: int = 8,
    probabilities: bool = False,
    overlays: bool = False,
    true_masks: str | Path | None = None,
) -> list[Path]:
    """Segment image files and write a mask PNG per image at the image's original size.

    Args:
        model: a model spec (see the module docstring) or a loaded `Segmenter`.
        inputs: image files and folders of images.
        out: output folder; gets ``<name>_mask.png`` (0/255) per input image.
        weights: weights tag when ``model`` is a registry name.
        threshold: probability above which a pixel is foreground.
        batch_size: images per forward pass.
        probabilities: also write ``<name>_prob.png``, the probability scaled to 0-255.
        overlays: also write ``<name>_overlay.png``: the image with the predicted outline in
            red (and the true one in green when ``true_masks`` is given).
        true_masks: folder of true masks named ``<name>_mask.png`` (or another image suffix),
            for the overlays; images without one get only the predicted outline.

    Returns:
        The mask files written.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    segmenter = model if isinstance(model, Segmenter) else load_model(model, weights)
    files = image_files(inputs)
    out = check_writable(out)
    written = []
    for path, image, probs in segmenter.probabilities(files, batch_size):
        mask = to_mask(probs, threshold)
        scale = 255 if probs.shape[-1] == 1 else 1
        mask_path = out / f"{path.stem}_mask.png"
        write_png(mask_path, (mask * scale).astype(np.uint8))
        written.append(mask_path)
        if probabilities and probs.shape[-1] == 1:
            write_png(out / f"{path.stem}_prob.png", np.rint(probs[..., 0] * 255).astype(np.uint8))
        if overlays:
            true = _true_mask(Path(true_masks), path) if true_masks is not None else None
            write_png(out / f"{path.stem}_overlay.png", overlay(image, mask, true))
    return written
