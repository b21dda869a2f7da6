"""A data set's fingerprint: what `segkit.planning` derives a 3-D plan from, as nnU-Net does.

```python
from segkit.data.fingerprint import fingerprint

found = fingerprint("Task01/")                         # imagesTr/ + labelsTr/ of NIfTI cases
found.spacings, found.shapes                           # per case, along its voxel axes
found.intensities["FLAIR"]["percentile_99_5"]          # per modality, over labelled voxels
found.class_voxels                                     # {0: ..., 1: ...} voxels per class
lgg = fingerprint("kaggle_3m/", voxel_spacing=(1, 1, 3))   # LGG: no spacing on file
```

What is read, per case (nnU-Net's ``DatasetFingerprintExtractor`` collects the same):

- **spacing and shape** along the case's voxel axes;
- **intensities** of each modality on voxels that hold a label (nnU-Net's "foreground"): up to
  `SAMPLES_PER_CASE` of them, drawn with a fixed seed, pooled over cases into mean, standard
  deviation, median, minimum, maximum and the 0.5th and 99.5th percentiles;
- **voxels per class**.

Two layouts are read:

- **the volume layout** (`segkit.data.volume_layout`): NIfTI cases in ``imagesTr/`` with labels
  in ``labelsTr/``, one file per modality. The modalities' names come from nnU-Net's
  ``dataset.json`` (``channel_names``) when the folder has one, else ``modalities`` names them;
  unnamed modalities are called ``MRI``. A label file whose shape or affine differs from its
  image, or a spacing of 0 or not a number, is an error naming the file.
- **the LGG layout** (``kaggle_3m``): each patient folder's TIFF slices, in slice-number order,
  are one volume of the FLAIR channel (rows, columns, slices). The TIFFs record no spacing, so
  `LGG_SPACING` (1 x 1 x 3 mm) is *assumed* unless ``voxel_spacing`` says otherwise, and the
  fingerprint says it was assumed.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import natsort
import numpy as np

from segkit.data import volume_layout
from segkit.data.errors import DataError
from segkit.data.imagefiles import read_array
from segkit.data.samples import detect_layout, find_samples

__all__ = ["LGG_SPACING", "SAMPLES_PER_CASE", "Fingerprint", "check_spacing", "fingerprint"]

#: Labelled voxels sampled per case for the intensity statistics (nnU-Net samples too).
SAMPLES_PER_CASE = 10_000
#: The voxel spacing assumed for LGG patient folders (rows, columns, slices), in mm: the
#: release records none (the same as the volume tests state).
LGG_SPACING = (1.0, 1.0, 3.0)
#: The LGG TIFF channel read as the volume: FLAIR (channels: pre-contrast, FLAIR, post-contrast).
LGG_FLAIR = 1


@dataclass
class Fingerprint:
    """What a data set holds, for planning.

    Attributes:
        root: the data folder.
        layout: ``"volumes"`` or ``"lgg"``.
        cases: case names, in order.
        spacings: each case's voxel size along its voxel axes, mm.
        shapes: each case's voxel shape.
        modalities: the name of each modality (channel), e.g. ``["FLAIR"]`` or ``["CT"]``.
        intensities: per modality name, statistics of its values on labelled voxels
            (``mean``, ``std``, ``median``, ``min``, ``max``, ``percentile_00_5``,
            ``percentile_99_5``).
        class_voxels: voxels per label value over all cases.
        assumed_spacing: the spacing the fingerprint assumed because the files record none
            (LGG), else None.
        notes: what people should know about how it was read (e.g. the assumed spacing).
    """

    root: str
    layout: str
    cases: list[str]
    spacings: list[tuple[float, float, float]]
    shapes: list[tuple[int, int, int]]
    modalities: list[str]
    intensities: dict[str, dict[str, float]]
    class_voxels: dict[int, int]
    assumed_spacing: tuple[float, float, float] | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """The fingerprint as JSON-ready values (class keys as strings)."""
        found = asdict(self)
        found["class_voxels"] = {str(k): v for k, v in self.class_voxels.items()}
        return found


def check_spacing(spacing: Sequence[float], source: str | Path) -> tuple[float, float, float]:
    """``spacing`` as three floats, or a `DataError` naming ``source`` when one is 0, negative
    or not a number."""
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise DataError(
            f"{source}: voxel spacing {values} must be three positive numbers (mm)", source
        )
    return values


def fingerprint(
    root: str | Path,
    *,
    modalities: Sequence[str] | None = None,
    voxel_spacing: Sequence[float] | None = None,
    seed: int = 0,
) -> Fingerprint:
    """Read the fingerprint of a volume layout or an LGG ``kaggle_3m`` folder.

    Args:
        root: the data folder.
        modalities: names of the modalities in channel order (``"CT"`` makes a modality CT);
            by default from ``dataset.json`` (volume layout), ``["FLAIR"]`` (LGG) or ``MRI``.
        voxel_spacing: LGG only: the spacing to assume (rows, columns, slices), mm;
            default `LGG_SPACING`.
        seed: seeds the sampling of labelled voxels.

    Raises:
        DataError: a folder of another layout or without cases; a case's label file whose
            shape or affine differs from its image; a spacing of 0 or not a number.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    layout = "volumes" if volume_layout.is_volume_layout(root) else detect_layout(root)
    rng = np.random.default_rng(seed)
    if layout == "volumes":
        if voxel_spacing is not None:
            raise ValueError("voxel_spacing is for LGG folders: NIfTI files record their spacing")
        cases = _volume_cases(root)
        names = list(modalities) if modalities else _dataset_json_names(root)
        assumed = None
    elif layout == "lgg":
        cases = _lgg_cases(root)
        names = list(modalities) if modalities else ["FLAIR"]
        assumed = check_spacing(voxel_spacing or LGG_SPACING, root)
    else:
        raise DataError(
            f"{root} holds {layout!r} data: a plan needs volumes (imagesTr/ and labelsTr/ of "
            "NIfTI files) or LGG patient folders",
            root,
        )
    if not cases:
        raise DataError(f"{root} holds no complete case", root)

    spacings, shapes, samples, counts = [], [], None, Counter()
    for _, read in cases:
        image, labels, spacing, source = read()
        if assumed is not None:
            spacing = assumed
        spacing = check_spacing(spacing, source)
        channels = image.reshape(*image.shape[:3], -1)
        if samples is None:
            names = names or ["MRI"] * channels.shape[-1]
            if len(names) != channels.shape[-1]:
                raise DataError(
                    f"{source} has {channels.shape[-1]} modality(ies); {len(names)} names were "
                    f"given ({', '.join(names)})",
                    source,
                )
            samples = [[] for _ in names]
        spacings.append(spacing)
        shapes.append(tuple(int(s) for s in image.shape[:3]))
        values, found = np.unique(labels, return_counts=True)
        counts.update({int(v): int(n) for v, n in zip(values, found, strict=True)})
        labelled = np.flatnonzero(labels.reshape(-1) > 0)
        if labelled.size:
            picked = rng.choice(labelled, min(SAMPLES_PER_CASE, labelled.size), replace=False)
            flat = channels.reshape(-1, channels.shape[-1])
            for c in range(len(names)):
                samples[c].append(flat[picked, c].astype(np.float64))
    intensities = {name: _statistics(samples[c]) for c, name in enumerate(names)}
    notes = []
    if assumed is not None:
        notes.append(
            f"the files record no voxel spacing; assumed {assumed} mm (rows, columns, slices)"
        )
    return Fingerprint(
        str(root),
        layout,
        [name for name, _ in cases],
        spacings,
        shapes,
        names,
        intensities,
        dict(sorted(counts.items())),
        assumed,
        notes,
    )


def _statistics(samples: list[np.ndarray]) -> dict[str, float]:
    if not samples:
        return {}
    values = np.concatenate(samples)
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "median": float(np.median(values)),
        "min": float(values.min()),
        "max": float(values.max()),
        "percentile_00_5": float(np.percentile(values, 0.5)),
        "percentile_99_5": float(np.percentile(values, 99.5)),
    }


def _dataset_json_names(root: Path) -> list[str] | None:
    """The modality names of nnU-Net's ``dataset.json`` (``channel_names``, or the older
    ``modality``), in channel order; None without one."""
    path = root / "dataset.json"
    if not path.is_file():
        return None
    try:
        described = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}", path) from None
    names = described.get("channel_names") or described.get("modality")
    if not isinstance(names, dict):
        return None
    return [str(names[key]) for key in sorted(names, key=int)]


def _volume_cases(root: Path) -> list[tuple[str, object]]:
    cases, problems = volume_layout.scan_cases(root)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise DataError(f"{first.file}: {first.problem}{more}", first.file)

    def reader(case):
        def read():
            image, labels = volume_layout.read_case(case.images, case.labels)
            return image.array, labels.array, image.spacing, case.images[0]

        return read

    return [(case.name, reader(case)) for case in cases]


def _lgg_cases(root: Path) -> list[tuple[str, object]]:
    by_patient: dict[str, list] = {}
    for sample in find_samples(root, layout="lgg"):
        by_patient.setdefault(sample.patient, []).append(sample)
    for samples in by_patient.values():
        samples[:] = natsort.natsorted(samples, key=lambda s: s.key)  # slice 2 before 10

    def reader(patient, samples):
        def read():
            image = np.stack([read_array(s.image, "RGB")[..., LGG_FLAIR] for s in samples], -1)
            labels = np.stack([read_array(s.mask, "L") > 0 for s in samples], -1)
            return image, labels.astype(np.uint8), LGG_SPACING, root / patient

        return read

    return [(patient, reader(patient, samples)) for patient, samples in by_patient.items()]
