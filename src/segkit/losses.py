"""Segmentation losses: Dice, Jaccard, Tversky, focal and their combinations.

Every loss works on channels-last tensors ``(batch, H, W, C)`` (or any number of spatial axes)
with ``keras.ops`` only, so it runs unchanged on JAX, PyTorch and TensorFlow.

The overlap losses share a small functional core, `soft_dice_score`,
`soft_jaccard_score` and `soft_tversky_score`, and three ways to read the inputs:

* ``mode="binary"``: one channel, a sigmoid output (or logits with ``from_logits=True``).
* ``mode="multilabel"``: C independent sigmoid channels, ``y_true`` of the same shape.
* ``mode="multiclass"``: C softmax channels; ``y_true`` as integer labels ``(batch, H, W)`` or
  ``(batch, H, W, 1)``, or one-hot ``(batch, H, W, C)``.
* ``mode="multilabel"`` with ``regions``: C sigmoid channels, one per region of a label map
  (nnU-Net's regions, e.g. ``[[1, 2, 3], [1, 3], [3]]``); ``y_true`` is the label map, turned
  into one target channel per region (as `segkit.masks.regions_from_labels` does).

Options shared by the losses, as segmentation_models_pytorch names them:

* ``include_background``: score channel 0 in the overlap losses (Dice, Jaccard, Tversky). Off
  by default in multiclass mode, where channel 0 is the background class that covers most
  pixels; on in multilabel mode, where every channel is foreground. Binary mode has one
  channel, always scored.
* ``class_weights``: one weight per channel for the overlap losses' mean over channels.
* ``ignore_index``: a label (e.g. 255 = unlabelled) whose pixels count in neither the
  cross-entropy nor the overlap: they are left out of both ``y_true`` and ``y_pred``.

Every loss reads its inputs through one function, `prepare_targets`.

The notebook's loss, ``1 - (2*sum(y*p) + 1) / (sum(y) + sum(p) + 1)`` summed over the whole
batch, is ``DiceLoss(smooth=1.0, per_image=False)`` (the defaults).

Losses are also found by name, with their arguments, which is how `segkit.train` builds them:

```python
from segkit import losses

losses.list()                                        # ['bce_dice', 'dice', 'focal', ...]
loss = losses.get("tversky", mode="binary", alpha=0.3, beta=0.7)
```

`register` adds a loss in-process; other packages add theirs through the ``segkit.losses``
entry-point group, loaded the first time the registry is asked anything.
"""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Callable, Sequence

import keras
from keras import ops

from segkit._plugins import Registry
from segkit.masks import check_regions

__all__ = [
    "register",
    "list",
    "get",
    "prepare_targets",
    "soft_dice_score",
    "soft_jaccard_score",
    "soft_tversky_score",
    "DiceLoss",
    "JaccardLoss",
    "TverskyLoss",
    "FocalTverskyLoss",
    "FocalLoss",
    "BCEDiceLoss",
]

MODES = ("binary", "multiclass", "multilabel")
ENTRY_POINT_GROUP = "segkit.losses"


def _check_accepts_mode(name: str, loss: Callable) -> None:
    accepted = _accepted_keywords(loss)
    if accepted is not None and "mode" not in accepted:
        raise ValueError(
            f"loss {name!r} ({loss.__module__}.{loss.__qualname__}) must accept a 'mode' "
            "argument: segkit.train passes 'binary', 'multiclass' or 'multilabel'"
        )


# Loss classes and factory functions by name; the built-in ones register below.
_losses = Registry("loss", "losses", ENTRY_POINT_GROUP, check=_check_accepts_mode)


def register(name: str | None = None) -> Callable[[Callable], Callable]:
    """Decorator that registers a loss class or factory function under ``name``.

    ``name`` defaults to the class's or function's ``__name__``. The loss must accept a
    ``mode`` keyword (``"binary"``, ``"multiclass"`` or ``"multilabel"``), because
    `segkit.train` passes the mode that matches the model's output.

    Raises:
        ValueError: if the name is already taken, or the loss does not accept ``mode``.
    """
    return _losses.register(name)


def list(pattern: str = "*") -> builtins.list[str]:  # noqa: A001  (as segkit.models.list)
    """Sorted names of the registered losses matching a shell-style wildcard ``pattern``."""
    return _losses.names(pattern)


def get(name: str, /, **kwargs) -> keras.losses.Loss:
    """The loss registered as ``name``, built with the keyword arguments ``kwargs``.

    ``get("dice", mode="binary")`` is ``DiceLoss(mode="binary")``;
    ``get("tversky", mode="binary", alpha=0.3, beta=0.7)`` passes the Tversky weights.

    Raises:
        KeyError: for an unknown name, listing the closest and all registered names.
        ValueError: for a keyword the loss does not take, listing those it takes.
    """
    factory = _losses.lookup(name)
    accepted = _accepted_keywords(factory)
    unknown = [key for key in kwargs if accepted is not None and key not in accepted]
    if unknown:
        raise ValueError(
            f"loss {name!r} does not take {', '.join(map(repr, unknown))}; "
            f"it takes {', '.join(accepted)}"
        )
    return factory(**kwargs)


def _accepted_keywords(loss: Callable) -> builtins.list[str] | None:
    """The keyword arguments ``loss`` takes, in signature order; None when it takes any.

    A class's ``**kwargs`` is followed up its ``__init__`` chain, since the losses here pass
    theirs on to their base class (``TverskyLoss(mode=...)`` reaches ``_OverlapLoss``).
    """
    if inspect.isclass(loss):
        signatures = [
            builtins.list(inspect.signature(vars(cls)["__init__"]).parameters.values())[1:]
            for cls in inspect.getmro(loss)
            if "__init__" in vars(cls)
        ]
    else:
        signatures = [builtins.list(inspect.signature(loss).parameters.values())]
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    accepted: dict[str, None] = {}
    for parameters in signatures:
        accepted.update(dict.fromkeys(p.name for p in parameters if p.kind in keyword_kinds))
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return builtins.list(accepted)
    return None


def _tp_fp_fn(y_true, y_pred, axis):
    """Soft true positives, false positives and false negatives summed over ``axis``."""
    true_positives = ops.sum(y_true * y_pred, axis=axis)
    false_positives = ops.sum((1.0 - y_true) * y_pred, axis=axis)
    false_negatives = ops.sum(y_true * (1.0 - y_pred), axis=axis)
    return true_positives, false_positives, false_negatives


def soft_dice_score(y_true, y_pred, smooth: float = 0.0, eps: float = 1e-7, axis=None):
    """Soft Dice ``(2*sum(y*p) + smooth) / (sum(y) + sum(p) + smooth)`` over ``axis``.

    Args:
        y_true: targets in [0, 1].
        y_pred: probabilities, same shape.
        smooth: added to numerator and denominator; 1.0 makes two empty masks score 1.
        eps: lower bound of the denominator, so that empty masks with ``smooth=0`` give 0, not NaN.
        axis: axes to sum over (None: all).

    Returns:
        The score with ``axis`` reduced.
    """
    intersection = ops.sum(y_true * y_pred, axis=axis)
    cardinality = ops.sum(y_true + y_pred, axis=axis)
    return (2.0 * intersection + smooth) / ops.maximum(cardinality + smooth, eps)


def soft_jaccard_score(y_true, y_pred, smooth: float = 0.0, eps: float = 1e-7, axis=None):
    """Soft Jaccard (IoU) ``(sum(y*p) + smooth) / (sum(y) + sum(p) - sum(y*p) + smooth)``.

    Args:
        y_true: targets in [0, 1].
        y_pred: probabilities, same shape.
        smooth: added to numerator and denominator; 1.0 makes two empty masks score 1.
        eps: lower bound of the denominator.
        axis: axes to sum over (None: all).

    Returns:
        The score with ``axis`` reduced.
    """
    intersection = ops.sum(y_true * y_pred, axis=axis)
    union = ops.sum(y_true + y_pred, axis=axis) - intersection
    return (intersection + smooth) / ops.maximum(union + smooth, eps)


def soft_tversky_score(
    y_true,
    y_pred,
    alpha: float = 0.5,
    beta: float = 0.5,
    smooth: float = 0.0,
    eps: float = 1e-7,
    axis=None,
):
    """Soft Tversky index ``(TP + smooth) / (TP + alpha*FP + beta*FN + smooth)``.

    ``alpha = beta = 0.5`` gives Dice and ``alpha = beta = 1`` Jaccard; a larger ``beta``
    punishes missed foreground (false negatives) more.

    Args:
        y_true: targets in [0, 1].
        y_pred: probabilities, same shape.
        alpha: weight of false positives.
        beta: weight of false negatives.
        smooth: added to numerator and denominator.
        eps: lower bound of the denominator.
        axis: axes to sum over (None: all).

    Returns:
        The score with ``axis`` reduced.
    """
    true_positives, false_positives, false_negatives = _tp_fp_fn(y_true, y_pred, axis)
    denominator = true_positives + alpha * false_positives + beta * false_negatives + smooth
    return (true_positives + smooth) / ops.maximum(denominator, eps)


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def _check_options(mode: str, regions, ignore_index) -> tuple:
    """``regions`` as a tuple of label tuples (multilabel mode only) and ``ignore_index`` as an
    int, checked."""
    if regions is not None:
        if mode != "multilabel":
            raise ValueError(
                f"regions need mode='multilabel' (one sigmoid channel each), not {mode!r}"
            )
        regions = check_regions(regions)
    if ignore_index is not None:
        if int(ignore_index) != ignore_index:
            raise ValueError(f"ignore_index must be a whole number, got {ignore_index!r}")
        ignore_index = int(ignore_index)
    return regions, ignore_index


def _is_label_map(y_true, y_pred) -> bool:
    """Whether ``y_true`` holds one label per pixel rather than one value per channel."""
    return len(y_true.shape) == len(y_pred.shape) - 1 or (
        len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1
    )


def _region_channels(labels, regions, dtype):
    """One 0/1 channel per region of an integer label map (the tensor twin of
    `segkit.masks.regions_from_labels`)."""
    channels = [
        sum(ops.cast(ops.equal(labels, label), dtype) for label in region) for region in regions
    ]
    return ops.stack(channels, axis=-1)


def prepare_targets(y_true, y_pred, mode: str = "binary", regions=None, ignore_index=None):
    """Targets as float, one channel per class or region, shaped like ``y_pred``, and the pixels
    that count.

    This is what every loss here (and `segkit.metrics`) reads its inputs through.

    Args:
        y_true: targets, as the ``mode`` reads them (see the module docstring).
        y_pred: channels-last predictions ``(batch, ..., C)``.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        regions: with ``mode="multilabel"``: the labels of each channel's region; ``y_true`` is
            then a label map.
        ignore_index: the value of ``y_true`` that marks pixels to leave out.

    Returns:
        ``(y_true, y_pred, valid)``: ``valid`` is 1.0 where a pixel counts and 0.0 where
        ``y_true`` holds ``ignore_index`` (one channel for a label map, else shaped like
        ``y_true``), or None without ``ignore_index``; ``y_true`` is 0 at ignored pixels.

    Raises:
        ValueError: shapes that do not fit the mode.
    """
    mode = _check_mode(mode)
    regions, ignore_index = _check_options(mode, regions, ignore_index)
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    num_channels = y_pred.shape[-1]
    if mode == "multiclass" and (num_channels is None or num_channels < 2):
        raise ValueError(
            f"multiclass mode needs y_pred with at least 2 channels, got shape {y_pred.shape}"
        )
    if mode == "binary" and num_channels != 1:
        raise ValueError(
            f"binary mode expects one output channel, got shape {y_pred.shape}; "
            "use mode='multilabel' or 'multiclass'"
        )
    labels = None
    if regions is not None or (mode == "multiclass" and _is_label_map(y_true, y_pred)):
        if not _is_label_map(y_true, y_pred):
            raise ValueError(
                f"regions need y_true as a label map (batch, H, W[, 1]), got shape {y_true.shape}"
            )
        labels = ops.cast(y_true, "int32")
        if len(labels.shape) == len(y_pred.shape):
            labels = ops.squeeze(labels, axis=-1)
    elif len(y_true.shape) == len(y_pred.shape) - 1:
        y_true = ops.expand_dims(y_true, axis=-1)

    valid = None
    if labels is not None:
        if ignore_index is not None:
            kept = ops.not_equal(labels, ignore_index)
            valid = ops.expand_dims(ops.cast(kept, y_pred.dtype), axis=-1)
            labels = ops.where(kept, labels, 0)  # one_hot of an out-of-range label is an error
        if regions is not None:
            if len(regions) != num_channels:
                raise ValueError(f"{len(regions)} regions for y_pred of {num_channels} channels")
            y_true = _region_channels(labels, regions, y_pred.dtype)
        else:
            y_true = ops.one_hot(labels, num_channels)
    elif ignore_index is not None:
        kept = ops.not_equal(y_true, ignore_index)
        valid = ops.cast(kept, y_pred.dtype)
        y_true = ops.where(kept, y_true, 0)
    if len(y_true.shape) != len(y_pred.shape):
        raise ValueError(
            f"y_true of shape {y_true.shape} does not match y_pred of shape {y_pred.shape}"
        )
    return ops.cast(y_true, y_pred.dtype), y_pred, valid


def _probabilities(y_pred, mode: str, from_logits: bool):
    if not from_logits:
        return y_pred
    return ops.softmax(y_pred, axis=-1) if mode == "multiclass" else ops.sigmoid(y_pred)


def _log_probabilities(y_pred, mode: str, from_logits: bool, eps: float):
    """``log p`` and ``log(1 - p)``, computed stably (log-sigmoid / log-softmax) from logits."""
    if from_logits:
        if mode == "multiclass":
            return ops.log_softmax(y_pred, axis=-1), None
        return ops.log_sigmoid(y_pred), ops.log_sigmoid(-y_pred)
    clipped = ops.clip(y_pred, eps, 1.0 - eps)
    return ops.log(clipped), ops.log(1.0 - clipped)


def _cross_entropy(y_true, y_pred, mode: str, from_logits: bool, eps: float):
    """Per-pixel cross-entropy: binary per channel, or categorical summed over channels."""
    log_p, log_not_p = _log_probabilities(y_pred, mode, from_logits, eps)
    if mode == "multiclass":
        if not from_logits:
            # Probabilities that do not sum to one would bias the loss; renormalise them.
            log_p = log_p - ops.log(ops.sum(ops.exp(log_p), axis=-1, keepdims=True))
        return -ops.sum(y_true * log_p, axis=-1, keepdims=True)
    return -(y_true * log_p + (1.0 - y_true) * log_not_p)


def _spatial_axes(y_pred, per_image: bool) -> tuple[int, ...]:
    """Axes the overlap is summed over: spatial ones, and the batch too when pooled."""
    first = 1 if per_image else 0
    return tuple(range(first, len(y_pred.shape) - 1))


def _mean_over_images(per_pixel, valid=None):
    """Mean of a per-pixel loss over every axis but the batch: one value per image; with
    ``valid``, over the pixels that count only."""
    axes = tuple(range(1, len(per_pixel.shape)))
    if valid is None:
        return ops.mean(per_pixel, axis=axes)
    valid = ops.broadcast_to(valid, ops.shape(per_pixel))
    return ops.sum(per_pixel * valid, axis=axes) / ops.maximum(ops.sum(valid, axis=axes), 1.0)


class _OverlapLoss(keras.losses.Loss):
    """``1 - score`` for an overlap score, averaged over channels with ``class_weights``.

    Returns one loss per image when ``per_image=True`` (so Keras averages them and applies
    sample weights) and one scalar for the batch otherwise.
    """

    def __init__(
        self,
        mode: str = "binary",
        from_logits: bool = False,
        smooth: float = 1.0,
        eps: float = 1e-7,
        per_image: bool = False,
        class_weights: Sequence[float] | None = None,
        include_background: bool | None = None,
        ignore_index: int | None = None,
        regions: Sequence[Sequence[int]] | None = None,
        name: str | None = None,
        reduction: str = "sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.mode = _check_mode(mode)
        self.from_logits = bool(from_logits)
        self.smooth = float(smooth)
        self.eps = float(eps)
        self.per_image = bool(per_image)
        if class_weights is not None:
            class_weights = [float(w) for w in class_weights]
            if any(w < 0 for w in class_weights) or sum(class_weights) <= 0:
                raise ValueError(
                    f"class_weights must be non-negative with a positive sum, got {class_weights}"
                )
        self.class_weights = class_weights
        if include_background is None:  # the background class of multiclass mode is left out
            include_background = self.mode != "multiclass"
        self.include_background = bool(include_background)
        self.regions, self.ignore_index = _check_options(self.mode, regions, ignore_index)

    def score(self, y_true, y_pred, axis):
        """The per-class overlap score; subclasses define it."""
        raise NotImplementedError

    def class_loss(self, score):
        """Loss from score; the focal variant raises it to a power."""
        return 1.0 - score

    def channel_weights(self, channels: int) -> builtins.list[float] | None:
        """Each channel's weight in the mean over channels; None when all weigh the same.

        Raises:
            ValueError: ``class_weights`` has not one entry per channel, or no channel is left.
        """
        if self.class_weights is not None and len(self.class_weights) != channels:
            raise ValueError(
                f"class_weights has {len(self.class_weights)} entries for {channels} channels"
            )
        weights = self.class_weights
        if not self.include_background and self.mode != "binary":
            weights = [0.0, *(weights or [1.0] * channels)[1:]]
            if not any(weights):
                raise ValueError(
                    f"include_background=False leaves no channel of {channels} to score"
                )
        return weights

    def call(self, y_true, y_pred):
        y_true, y_pred, valid = prepare_targets(
            y_true, y_pred, self.mode, self.regions, self.ignore_index
        )
        y_pred = _probabilities(y_pred, self.mode, self.from_logits)
        if valid is not None:  # ignored pixels are neither true nor predicted
            y_true, y_pred = y_true * valid, y_pred * valid
        score = self.score(y_true, y_pred, axis=_spatial_axes(y_pred, self.per_image))
        losses = self.class_loss(score)  # (batch, C) per image, or (C,) pooled
        weights = self.channel_weights(y_pred.shape[-1])
        if weights is None:
            return ops.mean(losses, axis=-1)
        weights = ops.convert_to_tensor(weights, dtype=losses.dtype)
        return ops.sum(losses * weights, axis=-1) / ops.sum(weights)

    def get_config(self):
        config = super().get_config()
        config.update(
            mode=self.mode,
            from_logits=self.from_logits,
            smooth=self.smooth,
            eps=self.eps,
            per_image=self.per_image,
            class_weights=self.class_weights,
            include_background=self.include_background,
            ignore_index=self.ignore_index,
            regions=_regions_config(self.regions),
        )
        return config


def _regions_config(regions) -> builtins.list[builtins.list[int]] | None:
    return None if regions is None else [builtins.list(region) for region in regions]


@register("dice")
@keras.saving.register_keras_serializable(package="segkit")
class DiceLoss(_OverlapLoss):
    """Soft Dice loss ``1 - Dice``.

    With the defaults (``smooth=1.0, per_image=False``) on a binary output it is exactly the
    notebook's ``1 - (2*sum(y*p) + 1) / (sum(y) + sum(p) + 1)`` pooled over the batch.

    Args:
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"`` (see the module docstring).
        from_logits: ``y_pred`` holds logits; sigmoid (softmax for multiclass) is applied.
        smooth: added to numerator and denominator; keeps empty masks from scoring 0.
        eps: lower bound of the denominator, so ``smooth=0`` never divides by zero.
        per_image: compute Dice per image and average (True), or once over the whole batch
            (False, the notebook's). Pooled Dice is steadier on small or empty masks.
        class_weights: one weight per channel for the mean over channels (0 leaves a channel
            out); None weighs all equally.
        include_background: score channel 0; None (the default): off in multiclass mode,
            where it is the background class, on in multilabel mode. Binary mode's one channel
            is always scored.
        ignore_index: a label of ``y_true`` (e.g. 255) whose pixels are left out.
        regions: multilabel mode: the labels of each channel's region (``[[1, 2, 3], [2]]``);
            ``y_true`` is then a label map.
        name: name of the loss.
        reduction: Keras reduction of the per-image losses.
        dtype: dtype of the computation.
    """

    def __init__(self, mode="binary", from_logits=False, smooth=1.0, name="dice_loss", **kwargs):
        super().__init__(mode=mode, from_logits=from_logits, smooth=smooth, name=name, **kwargs)

    def score(self, y_true, y_pred, axis):
        return soft_dice_score(y_true, y_pred, self.smooth, self.eps, axis=axis)


@register("jaccard")
@keras.saving.register_keras_serializable(package="segkit")
class JaccardLoss(_OverlapLoss):
    """Soft Jaccard (IoU) loss ``1 - IoU``; arguments as `DiceLoss`."""

    def __init__(self, mode="binary", from_logits=False, smooth=1.0, name="jaccard_loss", **kwargs):
        super().__init__(mode=mode, from_logits=from_logits, smooth=smooth, name=name, **kwargs)

    def score(self, y_true, y_pred, axis):
        return soft_jaccard_score(y_true, y_pred, self.smooth, self.eps, axis=axis)


@register("tversky")
@keras.saving.register_keras_serializable(package="segkit")
class TverskyLoss(_OverlapLoss):
    """Tversky loss ``1 - TP / (TP + alpha*FP + beta*FN)`` (Salehi et al., 2017).

    Args:
        alpha: weight of false positives.
        beta: weight of false negatives; ``beta > alpha`` favours recall on small lesions.
        **kwargs: as `DiceLoss` (mode, from_logits, smooth, eps, per_image, ...).
    """

    def __init__(self, alpha=0.5, beta=0.5, smooth=1.0, name="tversky_loss", **kwargs):
        super().__init__(smooth=smooth, name=name, **kwargs)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def score(self, y_true, y_pred, axis):
        return soft_tversky_score(
            y_true, y_pred, self.alpha, self.beta, self.smooth, self.eps, axis=axis
        )

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta}


@register("focal_tversky")
@keras.saving.register_keras_serializable(package="segkit")
class FocalTverskyLoss(TverskyLoss):
    """Focal Tversky loss ``(1 - Tversky)**gamma`` per class (Abraham and Khan, 2019).

    The paper's defaults: ``alpha=0.3`` (false positives), ``beta=0.7`` (false negatives) and
    ``gamma=0.75`` (their 1/γ with γ = 4/3), which focuses training on poorly segmented classes.

    Args:
        alpha: weight of false positives.
        beta: weight of false negatives.
        gamma: exponent applied to each class's Tversky loss.
        **kwargs: as `DiceLoss`.
    """

    def __init__(self, alpha=0.3, beta=0.7, gamma=0.75, name="focal_tversky_loss", **kwargs):
        super().__init__(alpha=alpha, beta=beta, name=name, **kwargs)
        self.gamma = float(gamma)

    def class_loss(self, score):
        # Bounded below by eps: the gradient of x**gamma is infinite at 0 for gamma < 1.
        return ops.power(ops.maximum(1.0 - score, self.eps), self.gamma)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma}


@register("focal")
@keras.saving.register_keras_serializable(package="segkit")
class FocalLoss(keras.losses.Loss):
    """Focal loss ``-alpha_t * (1 - p_t)**gamma * log(p_t)`` (Lin et al., 2017), mean per image.

    Args:
        mode: ``"binary"``, ``"multiclass"`` (softmax) or ``"multilabel"``.
        gamma: focusing exponent; 0 gives plain cross-entropy.
        alpha: weight of the foreground in binary and multilabel modes (background gets
            ``1 - alpha``); None weighs both equally. Not defined for multiclass.
        from_logits: ``y_pred`` holds logits (computed with log-sigmoid / log-softmax).
        eps: probabilities are clipped to ``[eps, 1 - eps]`` when not from logits.
        ignore_index: a label of ``y_true`` whose pixels are left out of the mean.
        regions: multilabel mode: the labels of each channel's region (see `DiceLoss`).
        name: name of the loss.
        reduction: Keras reduction of the per-image losses.
        dtype: dtype of the computation.
    """

    def __init__(
        self,
        mode: str = "binary",
        gamma: float = 2.0,
        alpha: float | None = None,
        from_logits: bool = False,
        eps: float = 1e-7,
        ignore_index: int | None = None,
        regions: Sequence[Sequence[int]] | None = None,
        name: str = "focal_loss",
        reduction: str = "sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.mode = _check_mode(mode)
        if alpha is not None and self.mode == "multiclass":
            raise ValueError("alpha is only defined for binary and multilabel modes")
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else float(alpha)
        self.from_logits = bool(from_logits)
        self.eps = float(eps)
        self.regions, self.ignore_index = _check_options(self.mode, regions, ignore_index)

    def call(self, y_true, y_pred):
        y_true, y_pred, valid = prepare_targets(
            y_true, y_pred, self.mode, self.regions, self.ignore_index
        )
        cross_entropy = _cross_entropy(y_true, y_pred, self.mode, self.from_logits, self.eps)
        if self.mode == "multiclass":
            prob_true = ops.exp(-cross_entropy)
        else:
            prob = _probabilities(y_pred, self.mode, self.from_logits)
            prob_true = y_true * prob + (1.0 - y_true) * (1.0 - prob)
        if self.gamma == 0.0:
            per_pixel = cross_entropy
        else:
            # Bounded below by eps: the gradient of x**gamma is infinite or NaN at 0 for small
            # gamma, and p_t reaches exactly 1 once float32 saturates.
            modulating = ops.power(ops.maximum(1.0 - prob_true, self.eps), self.gamma)
            per_pixel = modulating * cross_entropy
        if self.alpha is not None:
            per_pixel = per_pixel * (self.alpha * y_true + (1.0 - self.alpha) * (1.0 - y_true))
        return _mean_over_images(per_pixel, valid)

    def get_config(self):
        config = super().get_config()
        config.update(
            mode=self.mode,
            gamma=self.gamma,
            alpha=self.alpha,
            from_logits=self.from_logits,
            eps=self.eps,
            ignore_index=self.ignore_index,
            regions=_regions_config(self.regions),
        )
        return config


@register("bce_dice")
@keras.saving.register_keras_serializable(package="segkit")
class BCEDiceLoss(keras.losses.Loss):
    """``bce_weight * cross-entropy + dice_weight * DiceLoss``, the usual combined loss.

    The cross-entropy is binary per channel in binary and multilabel modes and categorical in
    multiclass mode, so ``bce_dice`` with ``mode="multiclass"`` is the cross-entropy + Dice loss
    of nnU-Net and MONAI's ``DiceCELoss``; it is averaged over the pixels of each image. The
    cross-entropy covers every class; ``include_background`` and ``class_weights`` weigh the
    Dice term only.

    Args:
        bce_weight: weight of the cross-entropy term.
        dice_weight: weight of the Dice term.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: ``y_pred`` holds logits.
        smooth: Dice smoothing (see `DiceLoss`).
        eps: Dice denominator floor and probability clip.
        per_image: Dice per image (True) or pooled over the batch (False).
        class_weights: Dice class weights (see `DiceLoss`).
        include_background: score channel 0 in the Dice term (see `DiceLoss`).
        ignore_index: a label of ``y_true`` whose pixels count in neither term.
        regions: multilabel mode: the labels of each channel's region (see `DiceLoss`).
        name: name of the loss.
        reduction: Keras reduction of the per-image losses.
        dtype: dtype of the computation.
    """

    def __init__(
        self,
        bce_weight: float = 0.5,
        dice_weight: float = 0.5,
        mode: str = "binary",
        from_logits: bool = False,
        smooth: float = 1.0,
        eps: float = 1e-7,
        per_image: bool = False,
        class_weights: Sequence[float] | None = None,
        include_background: bool | None = None,
        ignore_index: int | None = None,
        regions: Sequence[Sequence[int]] | None = None,
        name: str = "bce_dice_loss",
        reduction: str = "sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        self.dice = DiceLoss(
            mode=mode,
            from_logits=from_logits,
            smooth=smooth,
            eps=eps,
            per_image=per_image,
            class_weights=class_weights,
            include_background=include_background,
            ignore_index=ignore_index,
            regions=regions,
        )

    def call(self, y_true, y_pred):
        dice = self.dice
        dice_loss = dice.call(y_true, y_pred)
        y_true, y_pred, valid = prepare_targets(
            y_true, y_pred, dice.mode, dice.regions, dice.ignore_index
        )
        cross_entropy = _cross_entropy(y_true, y_pred, dice.mode, dice.from_logits, dice.eps)
        cross_entropy = _mean_over_images(cross_entropy, valid)
        return self.bce_weight * cross_entropy + self.dice_weight * dice_loss

    def get_config(self):
        config = super().get_config()
        dice_config = self.dice.get_config()
        config.update(
            bce_weight=self.bce_weight,
            dice_weight=self.dice_weight,
            **{
                key: dice_config[key]
                for key in (
                    "mode",
                    "from_logits",
                    "smooth",
                    "eps",
                    "per_image",
                    "class_weights",
                    "include_background",
                    "ignore_index",
                    "regions",
                )
            },
        )
        return config
