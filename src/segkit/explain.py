"""Saliency maps: which pixels drive a segmentation model's prediction.

A saliency map gives each pixel of an image a value: how much it drives the *explained score*,
the predicted probability summed over a region, as Seg-Grad-CAM does (Vinogradova et al.,
2020). The region is the predicted one by default (every pixel where the model finds
foreground, or, for a multi-class model, any class but background), or one the caller names: a
mask, or a class. Where the model predicts nothing, the score sums the foreground probability
over the whole image.

Four methods:

* ``"gradient"``: the magnitude of the score's gradient with respect to each pixel (Simonyan
  et al., 2014), the largest over the image's channels.
* ``"smoothgrad"``: that magnitude averaged over copies of the image with Gaussian noise added
  (Smilkov et al., 2017); less speckled.
* ``"gradcam"``: Grad-CAM (Selvaraju et al., 2017): a layer's feature maps weighted by the
  score's mean gradient per channel, negative parts dropped; coarse but stable.
* ``"occlusion"``: the drop in the score when a square patch of the image is blacked out, averaged
  over the patches covering each pixel (Zeiler and Fergus, 2014). It only runs the model
  forward, so it works for ``.onnx`` models too.

Gradients come from the backend's own automatic differentiation (``tf.GradientTape``, torch
autograd, ``jax.grad``), in `_gradient` alone; everything else is the same on every backend.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit import data
from segkit._io import atomic_path, check_writable
from segkit.data.classes import default_names
from segkit.data.samples import image_files
from segkit.inference import Segmenter, load_model
from segkit.masks import to_mask
from segkit.progress import Progress, note
from segkit.resize import resize_image, resize_mask, resize_probabilities
from segkit.visualize import PREDICTED_COLOUR

METHODS = ("gradient", "smoothgrad", "gradcam", "occlusion")
_GRADIENT_METHODS = ("gradient", "smoothgrad", "gradcam")

__all__ = ["METHODS", "default_layer", "explain", "saliency"]


@dataclass
class _Explanation:
    """One image's saliency map and the probabilities it explains, at the model's size."""

    saliency: np.ndarray  # float32 (h, w)
    probabilities: np.ndarray  # float32 (h, w, K)


def saliency(
    segmenter: Segmenter,
    image: np.ndarray,
    *,
    method: str = "gradient",
    target=None,
    layer: str | None = None,
    batch_size: int = 8,
    seed: int = 0,
    samples: int = 25,
    noise: float = 0.15,
    patch: int | None = None,
    stride: int | None = None,
) -> np.ndarray:
    """The saliency map of one image: ``float32 (H, W)`` at the image's size.

    Args:
        segmenter: a loaded model (`segkit.load_model`).
        image: ``uint8 (H, W, C)`` image, as `segkit.data.read_image` reads it.
        method: ``"gradient"``, ``"smoothgrad"``, ``"gradcam"`` or ``"occlusion"`` (see the
            module docstring). Only occlusion runs on ``.onnx`` models.
        target: the region whose probability is explained: None for the predicted region, a
            ``(H, W)`` mask at the image's size (array, or a mask file's path), or a class
            index (``1`` for a one-channel model; ``0`` to ``K - 1`` for ``K`` classes).
        layer: the layer Grad-CAM reads; None takes `default_layer`.
        batch_size: images per forward or backward pass (smoothgrad's noisy copies,
            occlusion's patched images).
        seed: seed of smoothgrad's noise.
        samples: smoothgrad's number of noisy copies.
        noise: smoothgrad's noise level, as a fraction of the image's value range.
        patch: occlusion's patch side in model pixels; default an eighth of the model's input.
        stride: occlusion's step between patches; default half a patch.

    Units: gradient and smoothgrad in score per unit of normalised input, gradcam in the
    layer's activation times gradient, occlusion in score (a drop; negative where hiding a
    patch raises the score).

    Raises:
        ValueError: an unknown method or layer, a target that does not fit the image or the
            model, or a gradient method on an ONNX model.
    """
    settings = (batch_size, seed, samples, noise, patch, stride)
    explainer = _Explainer(segmenter, method, layer, *settings)
    return _to_image_size(explainer.explain(image, _read_target(target)).saliency, image)


def explain(
    model: str | Path | Segmenter,
    inputs: Iterable[str | Path],
    out: str | Path,
    *,
    weights: str | None = None,
    defaults: bool = True,
    threshold: float | None = None,
    method: str = "gradient",
    target=None,
    layer: str | None = None,
    raw: bool = False,
    batch_size: int = 8,
    seed: int = 0,
    samples: int = 25,
    noise: float = 0.15,
    patch: int | None = None,
    stride: int | None = None,
    progress: bool = False,
) -> list[Path]:
    """Write a saliency picture per image: ``<name>_saliency.png``.

    Each picture shows the image in grey under the map (a heat map with its colour bar, scaled
    to the map's 99th percentile) and the predicted outline.

    Args:
        model: a model spec (see `segkit.inference`) or a loaded `Segmenter`.
        inputs: image files and folders of images.
        out: output folder.
        weights: weights tag when ``model`` is a registry name.
        defaults: with False, a model spec loads without its stored inference defaults
            (threshold 0.5). A map explains one pass of the network (no test-time augmentation,
            no post-processing), so a threshold chosen for averaged passes may not suit it.
        threshold: the threshold of the predicted region (outlined, and explained unless
            ``target`` says otherwise); None: the model's.
        method: see `saliency`.
        target: see `saliency`; a mask applies to every image, so they must share its size.
        layer: see `saliency` (Grad-CAM only).
        raw: also write the map itself, ``<name>_saliency.npy``: ``float32 (H, W)`` at the
            image's size.
        batch_size: see `saliency`.
        seed: see `saliency`; every image starts from it, so maps do not depend on the order
            of the inputs.
        samples: see `saliency`.
        noise: see `saliency`.
        patch: see `saliency`.
        stride: see `saliency`.
        progress: show the network passes done, their rate and the time left on standard
            error (smoothgrad and occlusion run dozens of passes per image).

    Returns:
        The files written: per image the picture, then (with ``raw``) the map.
    """
    _check_method(method)
    if isinstance(model, Segmenter):
        segmenter = model.with_settings(defaults=defaults, threshold=threshold)
    else:
        segmenter = load_model(model, weights, defaults=defaults, threshold=threshold)
    settings = (batch_size, seed, samples, noise, patch, stride)
    explainer = _Explainer(segmenter, method, layer, *settings)
    target = _read_target(target)
    files = image_files(inputs)
    out = check_writable(out)
    written = []
    note(f"explain: {segmenter.name}: {_one_pass(segmenter)}", enabled=progress)
    shown = Progress(len(files) * explainer.passes(), "passes", "explain", enabled=progress)
    explainer.tick = shown.update
    for path in files:
        image = data.read_image(path, segmenter.prep.channels)
        explained = explainer.explain(image, target)
        saliency_map = _to_image_size(explained.saliency, image)
        probabilities = resize_probabilities(explained.probabilities, image.shape[:2])
        mask = to_mask(probabilities, segmenter.threshold)
        classes = probabilities.shape[-1]
        region, what = _explained_region(segmenter, mask, classes, target)
        picture = out / f"{path.stem}_saliency.png"
        _draw(image, saliency_map, region, picture, f"{path.stem}: {method}, {what}")
        written.append(picture)
        if raw:
            array_path = out / f"{path.stem}_saliency.npy"
            with atomic_path(array_path) as tmp:
                np.save(tmp, saliency_map)
            written.append(array_path)
    return written


def _one_pass(segmenter: Segmenter) -> str:
    """Which settings a map uses: only the threshold (a map explains one pass of the network)."""
    stored = segmenter.settings.threshold == segmenter.stored.threshold != 0.5
    text = f"threshold {segmenter.threshold:g}{' (stored with the model)' if stored else ''}"
    dropped = [
        f"{label} {value}"
        for label, value in (
            ("TTA", segmenter.stored.tta),
            ("post-processing", segmenter.stored.postprocess),
        )
        if str(value) != "none"
    ]
    if dropped:
        text += (
            f"; a map explains one pass of the network, without the stored {' and '.join(dropped)}"
        )
    return text


def default_layer(network) -> str:
    """The layer Grad-CAM reads unless told otherwise: the one feeding the output head.

    In segkit's architectures that is the last decoder block, at full resolution but for
    ``fast_unet``'s (half): ``resunet`` ``up1_add``, ``unet`` and ``attention_unet``
    ``up1_relu2``, ``unet_plus_plus`` ``x0<depth>_relu2`` (``x04_relu2`` at depth 4),
    ``fast_unet`` ``up1_relu``. A model without a layer named ``head`` gets its last layer
    with 4-D output and more channels than the output has: its last feature maps.
    """
    names = [layer.name for layer in network.layers]
    if "head" in names:
        return network.get_layer("head").input._keras_history.operation.name
    classes = network.output.shape[-1]
    for layer in reversed(network.layers[:-1]):
        shape = layer.output.shape
        if len(shape) == 4 and classes not in (shape[1], shape[-1]):
            return layer.name
    raise ValueError(f"{network.name} has no layer with 4-D feature maps for Grad-CAM")


class _Explainer:
    """One method, set up once for a model and then applied to image after image."""

    def __init__(
        self, segmenter, method, layer, batch_size, seed, samples, noise, patch, stride
    ) -> None:
        _check_method(method)
        if method in _GRADIENT_METHODS and segmenter.network is None:
            raise ValueError(
                f"method {method!r} needs the model's gradients, which {segmenter.name} (an "
                "ONNX model) does not give: use --method occlusion (method='occlusion' in "
                "Python)"
            )
        if layer is not None and method != "gradcam":
            raise ValueError(f"--layer applies to --method gradcam only, not {method}")
        if batch_size < 1 or samples < 1:
            raise ValueError(f"batch_size and samples must be at least 1: {batch_size}, {samples}")
        self.segmenter, self.method = segmenter, method
        self.batch_size, self.seed, self.samples, self.noise = batch_size, seed, samples, noise
        height, width = segmenter.prep.size
        self.patch = patch or max(min(height, width) // 8, 1)
        self.stride = stride or max(self.patch // 2, 1)
        if self.patch < 1 or self.stride < 1:
            raise ValueError(f"patch and stride must be at least 1: {self.patch}, {self.stride}")
        if method == "gradcam":
            self._set_up_gradcam(layer or default_layer(segmenter.network))
        self.tick = lambda: None  # called after each pass of the network, for progress

    def passes(self) -> int:
        """Passes of the network (forward, or forward and backward) per image explained."""
        if self.method == "smoothgrad":
            return 1 + -(-self.samples // self.batch_size)
        if self.method == "occlusion":
            height, width = self.segmenter.prep.size
            windows = len(_starts(height, self.patch, self.stride))
            windows *= len(_starts(width, self.patch, self.stride))
            return 2 + -(-windows // self.batch_size)
        return 2

    def _set_up_gradcam(self, name: str) -> None:
        import keras

        network = self.segmenter.network
        try:
            layer = network.get_layer(name)
        except ValueError:
            near_output = [layer.name for layer in network.layers[-12:]]
            raise ValueError(
                f"no layer {name!r} in {self.segmenter.name}; layers near the output: "
                f"{', '.join(near_output)}"
            ) from None
        if len(layer.output.shape) != 4:
            raise ValueError(f"layer {name!r} gives {layer.output.shape}, not 4-D feature maps")
        self.layer = name
        # Two halves of the network split at the layer, so that Grad-CAM's gradient is the
        # gradient of a function of the features, like the input gradient: one code path.
        self.features = keras.Model(network.input, layer.output)
        self.rest = keras.Model([network.input, layer.output], network.output)
        self.channels_first = _computes_channels_first(network, layer)

    def explain(self, image: np.ndarray, target) -> _Explanation:
        prep = self.segmenter.prep
        x = data.normalize(resize_image(image, prep.size), prep)
        probabilities = np.asarray(self.segmenter.run(x[None]), dtype=np.float32)[0]
        self.tick()
        weights = _score_weights(probabilities, target, image.shape[:2], self.segmenter.threshold)
        method = getattr(self, f"_{self.method}")
        return _Explanation(method(x, weights).astype(np.float32), probabilities)

    def _score(self, weights: np.ndarray):
        """The explained score of a batch of outputs, as a backend function."""
        import keras

        weights = keras.ops.convert_to_tensor(weights[None])
        return lambda outputs: keras.ops.sum(outputs * weights)

    def _gradient(self, x, weights):
        score = self._score(weights)
        network = self.segmenter.network
        gradient = _gradient(lambda batch: score(network(batch, training=False)), x[None])
        self.tick()
        return np.abs(gradient[0]).max(axis=-1)

    def _smoothgrad(self, x, weights):
        score = self._score(weights)
        network = self.segmenter.network
        rng = np.random.default_rng(self.seed)
        sigma = self.noise * float(x.max() - x.min())
        total = np.zeros(x.shape[:2], np.float32)
        for start in range(0, self.samples, self.batch_size):
            count = min(self.batch_size, self.samples - start)
            noisy = (x[None] + rng.normal(0, sigma, (count, *x.shape))).astype(np.float32)
            # Copies do not interact (batch norm runs in inference mode), so the gradient of
            # the summed score is each copy's own gradient.
            gradient = _gradient(lambda batch: score(network(batch, training=False)), noisy)
            total += np.abs(gradient).max(axis=-1).sum(axis=0)
            self.tick()
        return total / self.samples

    def _gradcam(self, x, weights):
        import keras

        score = self._score(weights)
        image = keras.ops.convert_to_tensor(x[None])
        features = keras.ops.convert_to_numpy(self.features(image, training=False))
        gradient = _gradient(lambda f: score(self.rest([image, f], training=False)), features)
        if self.channels_first:
            features, gradient = features.transpose(0, 2, 3, 1), gradient.transpose(0, 2, 3, 1)
        channel_weights = gradient[0].mean(axis=(0, 1))
        cam = np.maximum((features[0] * channel_weights).sum(axis=-1), 0).astype(np.float32)
        self.tick()
        return resize_probabilities(cam[..., None], x.shape[:2])[..., 0]

    def _occlusion(self, x, weights):
        height, width = x.shape[:2]
        baseline = x.min(axis=(0, 1))  # the image's darkest value: background in a scan
        windows = [
            (top, left)
            for top in _starts(height, self.patch, self.stride)
            for left in _starts(width, self.patch, self.stride)
        ]
        base = float((np.asarray(self.segmenter.run(x[None]), np.float32) * weights).sum())
        self.tick()
        drop = np.zeros((height, width), np.float32)
        covered = np.zeros((height, width), np.float32)
        for start in range(0, len(windows), self.batch_size):
            chunk = windows[start : start + self.batch_size]
            batch = np.repeat(x[None], len(chunk), axis=0)
            for row, (top, left) in enumerate(chunk):
                batch[row, top : top + self.patch, left : left + self.patch] = baseline
            outputs = np.asarray(self.segmenter.run(batch), np.float32)
            scores = (outputs * weights).sum(axis=(1, 2, 3))
            self.tick()
            for (top, left), value in zip(chunk, scores):
                drop[top : top + self.patch, left : left + self.patch] += base - value
                covered[top : top + self.patch, left : left + self.patch] += 1
        return drop / np.maximum(covered, 1)


def _gradient(function, x: np.ndarray) -> np.ndarray:
    """The gradient of the scalar ``function(x)`` at ``x``, by the backend's autodiff.

    The one place that knows the backends apart; ``function`` takes and returns backend
    tensors (Keras models and ``keras.ops`` work on all three).
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            value = function(tensor)
        return tape.gradient(value, tensor).numpy()
    if backend == "torch":
        import torch

        tensor = keras.ops.convert_to_tensor(x).detach().requires_grad_(True)
        (gradient,) = torch.autograd.grad(function(tensor), tensor)
        return gradient.detach().cpu().numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(function)(keras.ops.convert_to_tensor(x)))
    raise ValueError(f"gradients on the {backend} backend are not supported: use occlusion")


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def _computes_channels_first(network, layer) -> bool:
    """Whether ``layer``'s output is ``(B, C, H, W)``: segkit models computing channels_first
    say so in their convolutions (their inputs and outputs stay channels-last)."""
    for candidate in (layer, *network.layers):
        data_format = getattr(candidate, "data_format", None)
        if data_format:
            return data_format == "channels_first"
    return False


def _read_target(target):
    """A mask file's path read as a mask; anything else as given."""
    if isinstance(target, (str, Path)):
        return data.read_mask_file(target)
    return target


def _score_weights(probabilities, target, image_size, threshold) -> np.ndarray:
    """Per pixel and channel, 1 where the explained score counts the probability, else 0."""
    height, width, classes = probabilities.shape
    foreground = np.zeros(classes, np.float32)
    foreground[0 if classes == 1 else 1 :] = 1
    if target is None:
        labels = to_mask(probabilities, threshold)
        if classes == 1:
            weights = labels[..., None].astype(np.float32)
        else:
            weights = (labels[..., None] == np.arange(classes)) * foreground
    elif isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        weights = _class_weights(probabilities, int(target), threshold)
    else:
        region = np.asarray(target)
        if region.shape != tuple(image_size):
            raise ValueError(
                f"the target region is {region.shape}, but the image is {tuple(image_size)}"
            )
        region = resize_mask((region != 0).astype(np.uint8), (height, width))
        weights = region[..., None] * foreground
    weights = np.asarray(weights, np.float32)
    if not weights.any():  # nothing predicted there: explain the foreground everywhere
        weights = np.broadcast_to(foreground, probabilities.shape).astype(np.float32)
    return weights


def _class_weights(probabilities, label: int, threshold) -> np.ndarray:
    classes = probabilities.shape[-1]
    if classes == 1:
        if label != 1:
            raise ValueError(f"class {label} does not exist: a one-channel model explains class 1")
        return to_mask(probabilities, threshold)[..., None].astype(np.float32)
    if not 0 <= label < classes:
        raise ValueError(f"class {label} does not exist: the model has classes 0 to {classes - 1}")
    weights = np.zeros(probabilities.shape, np.float32)
    weights[..., label] = to_mask(probabilities, threshold) == label
    return weights


def _starts(size: int, patch: int, stride: int) -> list[int]:
    """Patch offsets along one axis, the last one flush with the edge so that all is covered."""
    patch = min(patch, size)
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def _to_image_size(saliency_map: np.ndarray, image: np.ndarray) -> np.ndarray:
    resized = resize_probabilities(saliency_map[..., None], image.shape[:2])[..., 0]
    return resized.astype(np.float32)


def _explained_region(segmenter: Segmenter, mask: np.ndarray, classes: int, target):
    """The region a picture outlines, and the words its title gives it: the class explained
    (named, for a multi-class model), the region given, or the predicted region."""
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        if classes == 1:
            return mask > 0, "class 1, its predicted outline"
        names = segmenter.class_names or default_names(classes)
        name = f" ({names[target]})" if int(target) < len(names) else ""
        return mask == int(target), f"class {int(target)}{name}, its predicted outline"
    if target is not None:
        return np.asarray(target) != 0, "the region given, outlined"
    return mask > 0, "the predicted region, outlined"


def _draw(image, saliency_map, mask, path: Path, title: str) -> None:
    """The image in grey, the map as a heat map with its colour bar, the outline of ``mask``
    (the region explained) in `PREDICTED_COLOUR`."""
    # A bare Figure draws without pyplot, leaving the user's plotting backend alone.
    from matplotlib.figure import Figure

    grey = image[..., 0] if image.ndim == 3 else image
    # The 99th percentile, so that a few extreme pixels do not wash out the rest.
    top = float(np.percentile(saliency_map, 99)) or float(saliency_map.max()) or 1.0
    figure = Figure(figsize=(5.4, 4.4), constrained_layout=True)
    axis = figure.subplots()
    axis.imshow(grey, cmap="gray")
    heat = axis.imshow(saliency_map, cmap="inferno", alpha=0.55, vmin=0, vmax=top)
    if mask.any():
        colour = tuple(c / 255 for c in PREDICTED_COLOUR)
        axis.contour(mask, levels=[0.5], colors=[colour], linewidths=1.2)
    axis.set_title(f"{title} in orange", fontsize=9)
    axis.set_axis_off()
    figure.colorbar(heat, ax=axis, shrink=0.85, label="saliency")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100)


class _CallableModule(types.ModuleType):
    """``segkit.explain`` is this module once it is imported (Python sets the package's
    attribute), so calling it calls `explain`: ``segkit.explain(...)`` works either way."""

    def __call__(self, *args, **kwargs) -> list[Path]:
        return explain(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
