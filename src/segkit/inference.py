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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit import data
from segkit._io import check_writable
from segkit.data.samples import find_image_file, image_files
from segkit.masks import to_mask
from segkit.resize import resize_image, resize_nearest, resize_probabilities
from segkit.runs import RunFolder, load_keras
from segkit.visualize import overlay, write_png

ONNX_METADATA_KEY = "segkit.preprocessing"

__all__ = [
    "ONNX_METADATA_KEY",
    "Segmenter",
    "image_files",
    "load_model",
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
    """

    run: object
    prep: data.Preprocessing
    name: str
    network: object = None
    threshold: float = 0.5

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
        run = RunFolder(path)
        return _keras_segmenter(run.load_best(), run.preprocessing(), str(path))
    if path.suffix == ".keras":
        network = load_keras(path)
        return _keras_segmenter(network, _prep_for(network), str(path))
    if path.exists() or any(sep in str(spec) for sep in ("/", "\\")):
        raise FileNotFoundError(
            f"model {spec} is neither a run folder, a .keras file nor an .onnx file"
        )
    return _load_registered(str(spec), weights)


def _load_registered(spec: str, weights: str | None) -> Segmenter:
    import segkit
    from segkit.models import pretrained

    network = segkit.models.get(spec, weights=weights)
    name, tag = segkit.models.split_name(spec)
    tag = tag or weights
    if tag is None:
        return _keras_segmenter(network, _prep_for(network), name)
    header = pretrained.pretrained_header(name, tag)
    prep = data.Preprocessing(**header["preprocessing"])
    return _keras_segmenter(network, prep, f"{name}.{tag}", header["threshold"])


def _prep_for(network) -> data.Preprocessing:
    height, width, channels = network.input_shape[1:]
    return data.Preprocessing(size=(height or 256, width or 256), channels=channels)


def _keras_segmenter(network, prep: data.Preprocessing, name: str, threshold=0.5) -> Segmenter:
    def run(batch):
        return network.predict_on_batch(batch)

    return Segmenter(run, prep, name, network, threshold)


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
) -> list[Path]:
    """Segment image files and write a mask PNG per image at the image's original size.

    Args:
        model: a model spec (see the module docstring) or a loaded `Segmenter`.
        inputs: image files and folders of images.
        out: output folder; gets ``<name>_mask.png`` (0/255) per input image.
        weights: weights tag when ``model`` is a registry name.
        threshold: probability above which a pixel is foreground; None takes the model's own
            (shipped weights carry one; 0.5 elsewhere).
        batch_size: images per forward pass.
        probabilities: also write ``<name>_prob.png``, the probability scaled to 0-255.
        overlays: also write ``<name>_overlay.png``: the image with the predicted outline in
            red (and the true one in green when ``true_masks`` is given), with a legend.
        true_masks: folder of true masks named ``<name>_mask.png`` (or another image suffix),
            for the overlays; images without one get only the predicted outline.

    Returns:
        The mask files written.
    """
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    segmenter = model if isinstance(model, Segmenter) else load_model(model, weights)
    threshold = segmenter.threshold if threshold is None else threshold
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
            true = None
            if true_masks is not None:
                found = find_image_file(Path(true_masks), [f"{path.stem}_mask"])
                true = data.read_mask_file(found) if found else None
            picture = overlay(image, mask, true, legend=True)
            write_png(out / f"{path.stem}_overlay.png", picture)
    return written
