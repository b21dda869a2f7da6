"""Pictures for people: mask outlines over images (with a legend), training curves, PNG files.

Everything here draws; nothing computes a score. Files are written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segkit._io import atomic_path
from segkit.evaluation import score, surface

#: Outline colours of the overlays, from the Okabe-Ito palette, which stays distinct for the
#: common kinds of colour blindness (red and green outlines do not): orange for the prediction,
#: sky blue for the truth.
PREDICTED_COLOUR = (230, 159, 0)
TRUE_COLOUR = (86, 180, 233)

#: Colours of the classes 1, 2, ... of a label map (background is left uncoloured); repeated
#: beyond eight classes. Chosen to stay apart on grey MRI and for red-green colour blindness.
CLASS_COLOURS = (
    (230, 159, 0),
    (86, 180, 233),
    (204, 121, 167),
    (240, 228, 66),
    (0, 158, 115),
    (213, 94, 0),
    (0, 114, 178),
    (255, 255, 255),
)

#: Outline colour of the true classes on a label-map overlay.
TRUE_OUTLINE = (255, 255, 255)


def overlay(
    image: np.ndarray,
    predicted: np.ndarray,
    true: np.ndarray | None = None,
    *,
    legend: bool = False,
) -> np.ndarray:
    """RGB picture of ``image`` with the predicted outline in orange and the true one in sky
    blue (`PREDICTED_COLOUR`, `TRUE_COLOUR`).

    Args:
        image: ``uint8 (H, W)`` or ``(H, W, C)``; the first channel is shown in grey.
        predicted: ``(H, W)`` mask.
        true: ``(H, W)`` true mask, or None.
        legend: write what each colour means in the top-left corner, in letters sized to the
            image, and, with ``true``, the image's Dice.
    """
    grey = image[..., 0] if image.ndim == 3 else image
    picture = np.repeat(grey[..., None], 3, axis=-1).astype(np.uint8)
    from scipy import ndimage  # here, not at the top: the command line starts without SciPy

    thick = ndimage.binary_dilation  # one pixel is hard to see on a 512 image
    if true is not None:
        if true.shape != grey.shape:
            raise ValueError(f"true mask is {true.shape}, but the image is {grey.shape}")
        picture[thick(surface(true.astype(bool)))] = TRUE_COLOUR
    picture[thick(surface(predicted.astype(bool)))] = PREDICTED_COLOUR
    if legend:
        entries = [("predicted", PREDICTED_COLOUR)]
        if true is not None:
            entries.append(("true", TRUE_COLOUR))
            dice = score(predicted.astype(bool), true.astype(bool))["dice"]
            entries.append((f"Dice {dice:.3f}", LEGEND_TEXT))
        picture = _draw_legend(picture, entries)
    return picture


def class_colour(index: int) -> tuple[int, int, int]:
    """The colour of class ``index`` (1 or more) on label-map overlays."""
    return CLASS_COLOURS[(index - 1) % len(CLASS_COLOURS)]


def label_overlay(
    image: np.ndarray,
    predicted: np.ndarray,
    names: list[str] | tuple[str, ...],
    true: np.ndarray | None = None,
    *,
    opacity: float = 0.45,
) -> np.ndarray:
    """RGB picture of ``image`` with each predicted class filled in its colour, the true
    classes outlined in white, and a legend naming the classes shown and, with ``true``, the
    image's Dice (the mean over the classes in either map; a boolean ``true`` against the
    predicted foreground).

    Args:
        image: ``uint8 (H, W)`` or ``(H, W, C)``; the first channel is shown in grey.
        predicted: ``(H, W)`` label map, values ``0..len(names)-1`` (0: background, uncoloured).
        names: the class names, index = value.
        true: ``(H, W)`` true label map; or a boolean mask, outlined as ``true`` (a binary
            mask whose class the picture cannot know); or None.
        opacity: how strongly the class colours cover the image.
    """
    grey = image[..., 0] if image.ndim == 3 else image
    picture = np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)
    if predicted.shape != grey.shape:
        raise ValueError(f"predicted label map is {predicted.shape}, but the image is {grey.shape}")
    shown = [int(k) for k in np.unique(predicted) if k > 0]
    for k in shown:
        where = predicted == k
        picture[where] = (1 - opacity) * picture[where] + opacity * np.array(class_colour(k))
    picture = picture.round().astype(np.uint8)
    from scipy import ndimage  # here, not at the top: the command line starts without SciPy

    thick = ndimage.binary_dilation
    for k in shown:
        picture[thick(surface(predicted == k))] = class_colour(k)
    entries = [(names[k], class_colour(k)) for k in shown]
    if true is not None:
        if true.shape != grey.shape:
            raise ValueError(f"true label map is {true.shape}, but the image is {grey.shape}")
        if true.dtype == bool:
            picture[surface(true)] = TRUE_OUTLINE
            entries.append(("true", TRUE_OUTLINE))
            dice = score(predicted > 0, true)["dice"]
        else:
            truth = [int(k) for k in np.unique(true) if k > 0]
            for k in truth:
                picture[surface(true == k)] = TRUE_OUTLINE
            entries += [(f"true: {names[k]}", TRUE_OUTLINE) for k in truth]
            either = sorted(set(shown) | set(truth))
            dice = np.mean([score(predicted == k, true == k)["dice"] for k in either or [1]])
        entries.append((f"Dice {dice:.3f}", LEGEND_TEXT))
    return _draw_legend(picture, entries) if entries else picture


#: Colour of the legend's plain text (the Dice).
LEGEND_TEXT = (255, 255, 255)


def legend_font_size(height: int) -> int:
    """Letter height of the legend on a picture ``height`` pixels tall: a 25th of it, at least
    11 pixels, so the legend stays readable on a 512-pixel slice shown at its size."""
    return max(11, round(height / 25))


def _draw_legend(picture: np.ndarray, entries: list[tuple[str, tuple[int, int, int]]]):
    """Name each outline colour on a dark box in the corner (scans have dark corners)."""
    drawing = Image.fromarray(picture)
    draw = ImageDraw.Draw(drawing)
    size = legend_font_size(picture.shape[0])
    font = ImageFont.load_default(size=size)
    line, pad = round(size * 1.25), max(2, size // 4)
    width = size + 2 * pad + max(int(draw.textlength(name, font=font)) for name, _ in entries)
    draw.rectangle((0, 0, width + 2 * pad, 2 * pad + line * len(entries)), fill=(0, 0, 0))
    for row, (name, colour) in enumerate(entries):
        top = pad + row * line
        swatch = size // 2
        draw.rectangle(
            (pad, top + swatch // 2, pad + swatch, top + swatch // 2 + swatch), fill=colour
        )
        draw.text((2 * pad + swatch, top), name, fill=colour, font=font)
    return np.asarray(drawing)


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write a ``uint8`` array as a PNG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def label_palette() -> list[int]:
    """The 256-colour palette of label-map PNGs, as Pillow takes it (r, g, b, r, g, b, ...):
    background black, class ``k`` in `class_colour` ``(k)``."""
    colours = [(0, 0, 0)] + [class_colour(k) for k in range(1, 256)]
    return [value for colour in colours for value in colour]


def write_label_png(path: str | Path, labels: np.ndarray) -> None:
    """Write a label map as a palette PNG, atomically: each pixel's value stays its class index
    (what any tool, and `segkit.data.read_mask_file` with ``num_classes``, reads back), and the
    palette shows class ``k`` in its overlay colour, where values 0..K-1 in grey look black."""
    picture = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode="L")
    picture = picture.convert("P")  # an "L" image's values become the indices, unchanged
    picture.putpalette(label_palette())
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")


def plot_curves(history: list[dict], path: str | Path) -> None:
    """Loss and Dice per epoch, training beside validation, as a PNG."""
    figure = curves_figure(history)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100)


def curves_figure(history: list[dict]):
    """The figure `plot_curves` saves: a matplotlib ``Figure`` with loss and Dice axes."""
    # A bare Figure draws without pyplot, leaving the user's plotting backend alone.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = np.array([row["epoch"] for row in history])
    figure = Figure(figsize=(9, 3.5), constrained_layout=True)
    axes = figure.subplots(1, 2)
    for axis, metric in zip(axes, ("loss", "dice")):
        for prefix, style in (("", "-"), ("val_", "--")):
            key = prefix + metric
            if key in history[0]:
                axis.plot(epochs, [row[key] for row in history], style, marker="o", label=key)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(epochs) == 1:  # the locator alone still draws fractional ticks around one point
            axis.set_xticks(epochs)
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    return figure
