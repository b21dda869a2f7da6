"""Segmentation losses: Dice, Jaccard, Tversky, focal and their combinations.

Every loss works on channels-last tensors ``(batch, H, W, C)`` (or any number of spatial axes)
with ``keras.ops`` only, so it runs unchanged on JAX, PyTorch and TensorFlow.

The overlap losses share a small functional core, `soft_dice_score`,
`soft_jaccard_score` and `soft_tversky_score`, and three ways to read the inputs:

* ``mode="binary"``: one channel, a sigmoid output (or logits with ``from_logits=True``).
* ``mode="multilabel"``: C independent sigmoid channels, ``y_true`` of the same shape.
* ``mode="multiclass"``: C softmax channels; ``y_true`` as integer labels ``(batch, H, W)`` or
  ``(batch, H, W, 1)``, or one-hot ``(batch, H, W, C)``.

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

__all__ = [
    "register",
    "list",
    "get",
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
            "argument: segkit.train passes 'binary' or 'multiclass'"
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


def _prepare(y_true, y_pred, mode: str):
    """Targets as float, one channel per class, shaped like ``y_pred`` (channels last)."""
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    num_channels = y_pred.shape[-1]
    if mode == "multiclass":
        if num_channels is None or num_channels < 2:
            raise ValueError(
                f"multiclass mode needs y_pred with at least 2 channels, got shape {y_pred.shape}"
            )
        is_labels = len(y_true.shape) == len(y_pred.shape) - 1 or (
            len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1
        )
        if is_labels:
            if len(y_true.shape) == len(y_pred.shape):
                y_true = ops.squeeze(y_true, axis=-1)
            y_true = ops.one_hot(ops.cast(y_true, "int32"), num_channels)
    else:
        if mode == "binary" and num_channels != 1:
            raise ValueError(
                f"binary mode expects one output channel, got shape {y_pred.shape}; "
                "use mode='multilabel' or 'multiclass'"
            )
        if len(y_true.shape) == len(y_pred.shape) - 1:
            y_true = ops.expand_dims(y_true, axis=-1)
    if len(y_true.shape) != len(y_pred.shape):
        raise ValueError(
            f"y_true of shape {y_true.shape} does not match y_pred of shape {y_pred.shape}"
        )
    return ops.cast(y_true, y_pred.dtype), y_pred


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


def _mean_over_images(per_pixel):
    """Mean of a per-pixel loss over every axis but the batch: one value per image."""
    return ops.mean(per_pixel, axis=tuple(range(1, len(per_pixel.shape))))


class _OverlapLoss(keras.losses.Loss):
    """``1 - score`` for an overlap score, averaged over classes with ``class_weights``.

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

    def score(self, y_true, y_pred, axis):
        """The per-class overlap score; subclasses define it."""
        raise NotImplementedError

    def class_loss(self, score):
        """Loss from score; the focal variant raises it to a power."""
        return 1.0 - score

    def call(self, y_true, y_pred):
        y_true, y_pred = _prepare(y_true, y_pred, self.mode)
        y_pred = _probabilities(y_pred, self.mode, self.from_logits)
        score = self.score(y_true, y_pred, axis=_spatial_axes(y_pred, self.per_image))
        losses = self.class_loss(score)  # (batch, C) per image, or (C,) pooled
        if self.class_weights is None:
            return ops.mean(losses, axis=-1)
        if len(self.class_weights) != y_pred.shape[-1]:
            raise ValueError(
                f"class_weights has {len(self.class_weights)} entries for "
                f"{y_pred.shape[-1]} channels"
            )
        weights = ops.convert_to_tensor(self.class_weights, dtype=losses.dtype)
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
        )
        return config


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
        class_weights: one weight per channel for the mean over classes (0 excludes a class,
            e.g. the background); None weighs all equally.
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

    def call(self, y_true, y_pred):
        y_true, y_pred = _prepare(y_true, y_pred, self.mode)
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
        return _mean_over_images(per_pixel)

    def get_config(self):
        config = super().get_config()
        config.update(
            mode=self.mode,
            gamma=self.gamma,
            alpha=self.alpha,
            from_logits=self.from_logits,
            eps=self.eps,
        )
        return config


@register("bce_dice")
@keras.saving.register_keras_serializable(package="segkit")
class BCEDiceLoss(keras.losses.Loss):
    """``bce_weight * cross-entropy + dice_weight * DiceLoss``, the usual combined loss.

    The cross-entropy is binary per channel in binary and multilabel modes and categorical in
    multiclass mode; it is averaged over pixels per image.

    Args:
        bce_weight: weight of the cross-entropy term.
        dice_weight: weight of the Dice term.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: ``y_pred`` holds logits.
        smooth: Dice smoothing (see `DiceLoss`).
        eps: Dice denominator floor and probability clip.
        per_image: Dice per image (True) or pooled over the batch (False).
        class_weights: Dice class weights (see `DiceLoss`).
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
        )

    def call(self, y_true, y_pred):
        dice = self.dice
        dice_loss = dice.call(y_true, y_pred)
        y_true, y_pred = _prepare(y_true, y_pred, dice.mode)
        cross_entropy = _cross_entropy(y_true, y_pred, dice.mode, dice.from_logits, dice.eps)
        return self.bce_weight * _mean_over_images(cross_entropy) + self.dice_weight * dice_loss

    def get_config(self):
        config = super().get_config()
        dice_config = self.dice.get_config()
        config.update(
            bce_weight=self.bce_weight,
            dice_weight=self.dice_weight,
            **{
                key: dice_config[key]
                for key in ("mode", "from_logits", "smooth", "eps", "per_image", "class_weights")
            },
        )
        return config
