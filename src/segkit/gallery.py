"""Small pictures of scored cases for an evaluation page: the image with the true and the
predicted outlines, drawn while the masks are in memory.

`segkit.reports.evaluate` calls `Thumbnails.add` for each case it scores; the pictures go to a
folder (named in the report, so a page can be made from the report later) or stay in memory
for the page made at once (`segkit.report_page`).

```python
from segkit.gallery import Thumbnails
pictures = Thumbnails("thumbnails/")
report = segkit.evaluate("resunet.figshare", "data/test", thumbnails=pictures)
report["images"][0]["thumbnail"]  # "00000_1220.png", in thumbnails/
```
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from segkit import data
from segkit._io import atomic_path
from segkit.data import volume_layout, volumes
from segkit.evaluation import surface
from segkit.resize import resize_image, resize_nearest
from segkit.visualize import PREDICTED_COLOUR, TRUE_COLOUR, label_overlay

#: The Okabe-Ito palette (Okabe and Ito, 2008), whose colours stay apart for people with the
#: common colour-vision deficiencies; the page's legends and plots use it too.
OKABE_ITO = {
    "orange": (230, 159, 0),
    "sky blue": (86, 180, 233),
    "bluish green": (0, 158, 115),
    "yellow": (240, 228, 66),
    "blue": (0, 114, 178),
    "vermillion": (213, 94, 0),
    "reddish purple": (204, 121, 167),
}

#: Outline colours of the binary pictures, those of segkit's overlays: truth sky blue (drawn
#: wide), prediction orange (narrower, on top), so a contour where both agree shows orange
#: edged with blue.
TRUE_OUTLINE = TRUE_COLOUR
PREDICTED_OUTLINE = PREDICTED_COLOUR

#: Longest side of a picture in pixels: larger images are shrunk to it.
THUMBNAIL_SIDE = 256


class Thumbnails:
    """The pictures of one evaluation, written to ``folder`` or kept in memory (None).

    Attributes:
        folder: where the PNG files go; None keeps them in memory.
        side: the longest side of a picture.
    """

    def __init__(self, folder: str | Path | None = None, side: int = THUMBNAIL_SIDE):
        self.folder = None if folder is None else Path(folder)
        self.side = side
        self._memory: dict[str, bytes] = {}
        self._count = 0
        self._case: tuple = ((), None, {})  # the last volume read: its files, slices, positions
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)

    def add(self, sample, predicted, true, class_names=None) -> str | None:
        """Draw one scored case; return its picture's file name, or None when it is not
        drawn (a slice of a volume with foreground in neither mask: a volume's page shows
        slices through the lesion).

        Args:
            sample: the `segkit.data.Sample` scored.
            predicted: the predicted mask (or label map) as scored.
            true: the true mask (or label map) as scored, of the same shape.
            class_names: the classes of label maps; None for binary masks.
        """
        if sample.layout == "volumes" and not (np.any(predicted) or np.any(true)):
            return None
        picture = draw_case(
            self._image(sample, true.shape), predicted, true, class_names, self.side
        )
        name = f"{self._count:05d}_{re.sub(r'[^A-Za-z0-9._-]', '_', sample.key)}.png"
        self._count += 1
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG", optimize=True)
        if self.folder is None:
            self._memory[name] = buffer.getvalue()
        else:
            with atomic_path(self.folder / name) as tmp:
                Path(tmp).write_bytes(buffer.getvalue())
        return name

    def read(self, name: str) -> bytes | None:
        """The PNG bytes of a picture `add` made; None when it is gone from the folder."""
        if self.folder is None:
            return self._memory.get(name)
        path = self.folder / name
        return path.read_bytes() if path.is_file() else None

    def _image(self, sample, shape: tuple[int, int]) -> np.ndarray:
        """The sample's image (first channel) at the size its masks were scored at."""
        if sample.layout != "volumes":
            image, _ = data.read_pair(sample)
            return resize_image(image, tuple(shape))
        files = tuple(sample.modalities[:1])
        if self._case[0] != files:  # slices come volume by volume: read each volume once
            volume, _ = volume_layout.read_case(files)
            slicing = volumes.slicing(volume)
            mapped, _ = volumes.map_to_uint8(volume.array)
            positions = {int(index): p for p, index in enumerate(slicing.indices)}
            self._case = (files, slicing.slices(mapped), positions)
        _, stack, positions = self._case
        image = stack[positions[sample.slice]]
        return resize_image(image if image.ndim == 3 else image[..., None], tuple(shape))


def draw_case(image, predicted, true, class_names=None, side: int = THUMBNAIL_SIDE):
    """``uint8 (h, w, 3)`` picture of a case no larger than ``side``: binary masks as outlines
    (truth sky blue, prediction orange), label maps as `segkit.visualize.label_overlay` draws
    them (predicted classes filled in their colours, true classes outlined, a legend)."""
    grey = image[..., 0] if image.ndim == 3 else image
    height, width = grey.shape
    scale = min(1.0, side / max(height, width))
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    grey = resize_image(grey[..., None], size)[..., 0]
    predicted = resize_nearest(np.asarray(predicted, np.uint8), size)
    true = resize_nearest(np.asarray(true, np.uint8), size)
    if class_names is not None:
        return label_overlay(grey, predicted, list(class_names), true)
    picture = np.repeat(grey[..., None], 3, axis=-1).astype(np.uint8)
    picture[ndimage.binary_dilation(surface(true > 0), iterations=2)] = TRUE_OUTLINE
    picture[ndimage.binary_dilation(surface(predicted > 0))] = PREDICTED_OUTLINE
    return picture
