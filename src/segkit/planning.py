"""A training plan derived from a data set's fingerprint, by nnU-Net's written rules.

```python
from segkit.data.fingerprint import fingerprint
from segkit import planning

plan = planning.make_plan(fingerprint("Task01/"), memory="8GB")
plan.dims, plan.target_spacing, plan.patch_size, plan.batch_size, plan.depth
print(planning.table(plan))
planning.write_plan("plan.json", plan)              # atomically
planning.make_plan(found, memory="8GB", patch_size=(64, 64, 64))   # any value overridden
```

The rules, each as nnU-Net (Isensee et al., "nnU-Net: a self-configuring method for deep
learning-based biomedical image segmentation", Nature Methods 18, 2021; its
``ExperimentPlanner`` in ``nnunetv2/experiment_planning``) writes it; segkit's code is its own:

- **Target spacing** (`target_spacing`): the median spacing per axis. When one axis's median
  spacing is more than `ANISOTROPY` (3) times the others' and its median voxel count less than
  a third of theirs, that axis takes the 10th percentile of its spacings instead (but not less
  than the others' largest), so that thick-slice cases are not interpolated far.
- **2-D or 3-D** (`choose_dims`): at the target spacing, one axis more than `ANISOTROPY` times
  coarser than the finest favours a 2-D network on the other two axes. nnU-Net itself trains
  both and keeps the better by cross-validation; segkit states this as a starting point.
- **Depth** (`pooling`): each axis is halved while its feature map stays at least
  `MIN_FEATURE_EDGE` (4) voxels after halving and its spacing is within twice the finest; a
  lone axis needs three times that. The depth is the number of halvings plus one, and the
  patch is rounded up to a multiple of ``2 ** halvings`` per axis.
- **Patch and batch size** (`patch_and_batch`): a patch of the target spacing's aspect ratio
  of 256^3 voxels (2-D: 2048^2), clipped to the median shape; while two patches' training
  memory (`estimate_memory`) exceeds the budget, the axis largest against the median shape
  shrinks by one pooling step. The batch is what the budget holds, at most 5% of the data
  set's voxels per step, at least 2.
- **Normalisation** (`normalisation`): z-score per case for MRI and every other modality; CT
  is clipped to the 0.5th and 99.5th percentiles of its labelled voxels over the data set,
  then z-scored with their mean and standard deviation.

The memory estimate is segkit's, not nnU-Net's (which builds the network and counts its
activations): a U-Net of ``32 * 2 ** stage`` features (at most 320 in 3-D, 512 in 2-D) keeps
about `BYTES_PER_FEATURE_VOXEL` bytes per feature per voxel of each stage while training.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from segkit._io import write_json
from segkit.data.fingerprint import Fingerprint

__all__ = [
    "ANISOTROPY",
    "BYTES_PER_FEATURE_VOXEL",
    "MIN_FEATURE_EDGE",
    "Plan",
    "PlanError",
    "choose_dims",
    "default_memory",
    "estimate_memory",
    "make_plan",
    "normalisation",
    "parse_memory",
    "patch_and_batch",
    "pooling",
    "table",
    "target_spacing",
    "write_plan",
]

PLAN_FORMAT = 1
#: How much coarser one axis must be than the others to count as anisotropic (nnU-Net's 3).
ANISOTROPY = 3.0
#: The smallest edge of the deepest feature map (nnU-Net's 4 voxels).
MIN_FEATURE_EDGE = 4
#: Training memory per feature per voxel of each stage, bytes: a rough count of the float32
#: maps a U-Net stage keeps for the backward pass (convolutions, normalisations, activations
#: of encoder and decoder).
BYTES_PER_FEATURE_VOXEL = 48
BASE_FEATURES = 32
MAX_FEATURES = {2: 512, 3: 320}
#: The patch nnU-Net starts from before shrinking it to the budget, in voxels.
START_VOXELS = {2: 2048**2, 3: 256**3}
#: The largest share of the data set's voxels one batch may cover (nnU-Net's 5%).
MAX_DATASET_SHARE = 0.05
MIN_BATCH = 2
#: Modalities normalised as CT (clipped percentiles, then the data set's z-score).
CT_NAMES = ("CT",)


class PlanError(ValueError):
    """A plan that cannot be made: the message says which value and why."""


@dataclass
class Plan:
    """A training plan: what `make_plan` derived, each value overridable.

    Attributes:
        data: the data folder.
        dims: 2 or 3: the network's spatial dimensions.
        target_spacing: the voxel size every case is resampled to (along voxel axes), mm.
        patch_size: the training patch, voxels (2-D: the two in-plane axes).
        batch_size: patches per step.
        pools_per_axis: halvings of each patch axis; ``depth`` is their maximum plus one.
        depth: the network's stages.
        slice_axis: for a 2-D plan, the voxel axis slices are cut across; None for 3-D.
        normalisation: per modality, ``{"modality", "scheme", ...}`` (`normalisation`).
        memory_budget: bytes allowed; estimated_memory: bytes one step is estimated to need.
        modalities: the modalities the plan was made for, in channel order.
        overridden: the values given instead of derived.
        reasons: one line per rule, saying what it found.
        fingerprint: the data set's fingerprint, for reference.
    """

    data: str
    dims: int
    target_spacing: tuple[float, ...]
    patch_size: tuple[int, ...]
    batch_size: int
    pools_per_axis: tuple[int, ...]
    depth: int
    slice_axis: int | None
    normalisation: list[dict]
    memory_budget: int
    estimated_memory: int
    modalities: list[str]
    overridden: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    fingerprint: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The plan as JSON-ready values, with its format version."""
        return {"format": PLAN_FORMAT, **asdict(self)}


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})


def parse_memory(text: str | int) -> int:
    """``"8GB"``, ``"512MiB"`` or a byte count as bytes.

    Raises:
        PlanError: text that is not a positive size.
    """
    if isinstance(text, int):
        size = text
    else:
        match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", str(text))
        unit = match[2].upper() if match else None
        if match is None or unit not in _UNITS:
            raise PlanError(f"memory {text!r} is not a size such as 8GB or 512MiB")
        size = int(float(match[1]) * _UNITS[unit])
    if size <= 0:
        raise PlanError(f"memory {text!r} must be more than 0 bytes")
    return size


def default_memory() -> int:
    """The machine's memory budget when none is given: half of its physical memory (training
    runs on the host's memory without an accelerator; the rest is left to the system)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def target_spacing(
    spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]]
) -> tuple[tuple[float, ...], str]:
    """nnU-Net's target spacing: the median, with its rule for one coarse axis.

    Returns:
        ``(spacing, reason)``.
    """
    spacings = np.asarray(spacings, float)
    target = np.percentile(spacings, 50, axis=0)
    median_shape = np.percentile(np.asarray(shapes, float), 50, axis=0)
    coarse = int(np.argmax(target))
    others = [axis for axis in range(len(target)) if axis != coarse]
    other_spacing = max(target[a] for a in others)
    anisotropic = target[coarse] > ANISOTROPY * other_spacing
    few_voxels = median_shape[coarse] * ANISOTROPY < min(median_shape[a] for a in others)
    reason = "median spacing of the cases"
    if anisotropic and few_voxels:
        tenth = float(np.percentile(spacings[:, coarse], 10))
        # Never finer than the other axes (nnU-Net adds 1e-5 to keep the axis the coarsest).
        target[coarse] = tenth if tenth >= other_spacing else other_spacing + 1e-5
        reason += f"; axis {coarse} is coarse and short, so its 10th percentile"
    return tuple(round(float(s), 6) for s in target), reason


def choose_dims(spacing: Sequence[float]) -> tuple[int, int | None, str]:
    """2-D when one axis is more than `ANISOTROPY` times coarser than the finest, else 3-D.

    Returns:
        ``(dims, slice_axis, reason)``: the slice axis (the coarse one) for 2-D, else None.
    """
    spacing = np.asarray(spacing, float)
    ratio = float(spacing.max() / spacing.min())
    if ratio > ANISOTROPY:
        axis = int(np.argmax(spacing))
        return 2, axis, f"spacing ratio {ratio:.2f} > {ANISOTROPY:g}: 2-D slices across axis {axis}"
    return 3, None, f"spacing ratio {ratio:.2f} <= {ANISOTROPY:g}: 3-D"


def pooling(spacing: Sequence[float], patch: Sequence[int]) -> tuple[int, ...]:
    """How many times nnU-Net's rule halves each axis of ``patch`` at ``spacing``."""
    spacing = [float(s) for s in spacing]
    size = [float(p) for p in patch]
    pools = [0] * len(size)
    while True:
        axes = [a for a in range(len(size)) if size[a] >= 2 * MIN_FEATURE_EDGE]
        if not axes:
            break
        finest = min(spacing[a] for a in axes)
        axes = [a for a in axes if spacing[a] / finest < 2]
        if len(axes) == 1 and size[axes[0]] < 3 * MIN_FEATURE_EDGE:
            break
        for axis in axes:
            pools[axis] += 1
            spacing[axis] *= 2
            size[axis] = math.ceil(size[axis] / 2)
    return tuple(pools)


def _round_up(patch: Sequence[int], pools: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(math.ceil(p / 2**n) * 2**n) for p, n in zip(patch, pools, strict=True))


def estimate_memory(
    patch: Sequence[int], pools: Sequence[int], batch: int, channels: int = 1, classes: int = 2
) -> int:
    """Bytes one training step of a U-Net on ``batch`` patches is estimated to need.

    Stage ``s`` has ``min(32 * 2 ** s, 320 or 512)`` features on the patch halved ``s`` times
    (along the axes that are pooled that often); each feature-voxel costs
    `BYTES_PER_FEATURE_VOXEL` bytes; the input and output add their own voxels.
    """
    dims = len(patch)
    depth = max(pools) + 1
    total = 0
    for stage in range(depth):
        voxels = math.prod(p / 2 ** min(stage, n) for p, n in zip(patch, pools, strict=True))
        features = min(BASE_FEATURES * 2**stage, MAX_FEATURES[dims])
        total += voxels * features
    total = total * BYTES_PER_FEATURE_VOXEL + math.prod(patch) * (channels + classes) * 4
    return int(batch * total)


def patch_and_batch(
    spacing: Sequence[float],
    median_shape: Sequence[float],
    dataset_voxels: float,
    memory: int,
    *,
    channels: int = 1,
    classes: int = 2,
) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """nnU-Net's search for the patch and batch that fit ``memory`` bytes.

    Returns:
        ``(patch, pools_per_axis, batch)``.

    Raises:
        PlanError: not even the smallest patch fits two to a batch.
    """
    dims = len(spacing)
    inverse = 1 / np.asarray(spacing, float)
    start = inverse * (START_VOXELS[dims] / np.prod(inverse)) ** (1 / dims)
    patch = [min(round(s), int(m)) for s, m in zip(start, median_shape, strict=True)]
    pools = pooling(spacing, patch)
    patch = list(_round_up(patch, pools))
    while estimate_memory(patch, pools, MIN_BATCH, channels, classes) > memory:
        order = np.argsort([p / m for p, m in zip(patch, median_shape, strict=True)])[::-1]
        for axis in order:
            step = 2 ** pools[axis]
            # The smallest patch pools once per axis (or is the median shape, when less).
            if patch[axis] - step >= min(2 * MIN_FEATURE_EDGE, median_shape[axis]):
                patch[axis] -= step
                break
        else:
            needed = estimate_memory(patch, pools, MIN_BATCH, channels, classes)
            raise PlanError(
                f"no patch fits the memory budget of {_size(memory)}: the smallest, "
                f"{tuple(patch)}, needs {_size(needed)} for a batch of {MIN_BATCH}"
            )
        pools = pooling(spacing, patch)
        patch = list(_round_up(patch, pools))
    batch = memory // max(estimate_memory(patch, pools, 1, channels, classes), 1)
    share = round(dataset_voxels * MAX_DATASET_SHARE / math.prod(patch))
    return tuple(patch), pools, int(max(min(batch, share), MIN_BATCH))


def normalisation(modalities: Sequence[str], intensities: dict[str, dict]) -> list[dict]:
    """Per modality, nnU-Net's scheme: ``"ct"`` (clip to the data set's labelled-voxel 0.5th
    and 99.5th percentiles, then z-score with their mean and std) or ``"zscore"`` (each case by
    its own mean and std)."""
    schemes = []
    for name in modalities:
        if name.upper() in CT_NAMES:
            stats = intensities.get(name) or {}
            if not stats:
                raise PlanError(f"modality {name}: no labelled voxels to take CT statistics from")
            schemes.append(
                {
                    "modality": name,
                    "scheme": "ct",
                    "clip": [stats["percentile_00_5"], stats["percentile_99_5"]],
                    "mean": stats["mean"],
                    "std": stats["std"],
                }
            )
        else:
            schemes.append({"modality": name, "scheme": "zscore"})
    return schemes


def make_plan(
    found: Fingerprint,
    *,
    memory: str | int | None = None,
    dims: int | None = None,
    target_spacing_mm: Sequence[float] | None = None,
    patch_size: Sequence[int] | None = None,
    batch_size: int | None = None,
) -> Plan:
    """Derive a plan from a fingerprint; a value given is used instead of its rule.

    Args:
        found: the data set's fingerprint (`segkit.data.fingerprint.fingerprint`).
        memory: the budget (``"8GB"``, bytes); default `default_memory`.
        dims: 2 or 3 instead of `choose_dims`.
        target_spacing_mm: instead of `target_spacing` (three values, mm).
        patch_size: instead of `patch_and_batch`'s (``dims`` values); it must still fit.
        batch_size: instead of the budget's.

    Raises:
        PlanError: a value out of range, or a patch (given or searched) that does not fit.
    """
    budget = parse_memory(memory) if memory is not None else default_memory()
    overridden, reasons = [], []
    if target_spacing_mm is not None:
        spacing = tuple(float(s) for s in target_spacing_mm)
        if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
            raise PlanError(f"target spacing {spacing} must be three positive numbers")
        overridden.append("target_spacing")
        reasons.append("target spacing: given")
    else:
        spacing, why = target_spacing(found.spacings, found.shapes)
        reasons.append(f"target spacing: {why}")
    chosen, slice_axis, why = choose_dims(spacing)
    if dims is not None:
        if dims not in (2, 3):
            raise PlanError(f"dims must be 2 or 3, got {dims}")
        if dims != chosen:
            slice_axis = int(np.argmax(spacing)) if dims == 2 else None
            why = f"given ({why.split(':')[0]} would suggest {chosen}-D)"
        overridden.append("dims")
        chosen = dims
    reasons.append(f"dims: {why}")

    # Each case's shape at the target spacing; 2-D plans look at the in-plane axes.
    resampled = [
        [s * old / new for s, old, new in zip(shape, case_spacing, spacing, strict=True)]
        for shape, case_spacing in zip(found.shapes, found.spacings, strict=True)
    ]
    axes = [a for a in range(3) if a != slice_axis] if chosen == 2 else [0, 1, 2]
    median_shape = np.median(np.asarray(resampled)[:, axes], axis=0)
    plane_spacing = [spacing[a] for a in axes]
    dataset_voxels = float(sum(math.prod(shape) for shape in resampled))
    channels = len(found.modalities)
    classes = max(len(found.class_voxels), 2)

    if patch_size is not None:
        patch = tuple(int(p) for p in patch_size)
        if len(patch) != chosen or min(patch) < 1:
            raise PlanError(f"patch size {patch} must be {chosen} positive numbers for {chosen}-D")
        pools = pooling(plane_spacing, patch)
        needed = estimate_memory(patch, pools, batch_size or MIN_BATCH, channels, classes)
        if needed > budget:
            raise PlanError(
                f"patch size {patch} does not fit the memory budget of {_size(budget)}: "
                f"a batch of {batch_size or MIN_BATCH} needs about {_size(needed)}"
            )
        batch = max(min(budget // estimate_memory(patch, pools, 1, channels, classes), 2**31), 1)
        overridden.append("patch_size")
        reasons.append("patch size: given")
    else:
        patch, pools, batch = patch_and_batch(
            plane_spacing, median_shape, dataset_voxels, budget, channels=channels, classes=classes
        )
        reasons.append(
            f"patch size: largest of the spacing's aspect within {_size(budget)} for a batch of "
            f"{MIN_BATCH}, median shape {tuple(int(m) for m in median_shape)}"
        )
    if batch_size is not None:
        if batch_size < 1:
            raise PlanError(f"batch size must be at least 1, got {batch_size}")
        needed = estimate_memory(patch, pools, batch_size, channels, classes)
        if needed > budget:
            raise PlanError(
                f"a batch of {batch_size} patches of {patch} needs about {_size(needed)}, more "
                f"than the memory budget of {_size(budget)}"
            )
        batch = batch_size
        overridden.append("batch_size")
        reasons.append("batch size: given")
    else:
        reasons.append("batch size: what the budget holds, at most 5% of the data set's voxels")
    reasons.append(f"depth: halve each axis while its feature map keeps {MIN_FEATURE_EDGE}+ voxels")
    schemes = normalisation(found.modalities, found.intensities)
    reasons.append("normalisation: z-score per case; CT: clipped percentiles, then z-score")
    return Plan(
        data=found.root,
        dims=chosen,
        target_spacing=tuple(spacing),
        patch_size=tuple(patch),
        batch_size=int(batch),
        pools_per_axis=tuple(pools),
        depth=max(pools) + 1,
        slice_axis=slice_axis,
        normalisation=schemes,
        memory_budget=budget,
        estimated_memory=estimate_memory(patch, pools, int(batch), channels, classes),
        modalities=list(found.modalities),
        overridden=overridden,
        reasons=reasons + found.notes,
        fingerprint=found.to_json(),
    )


def _size(size: float) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{int(size)} B"


def table(plan: Plan) -> str:
    """The plan as a plain-text table for people, one value a line."""
    fp = plan.fingerprint
    spacings = np.asarray(fp.get("spacings") or [[0, 0, 0]])
    shapes = np.asarray(fp.get("shapes") or [[0, 0, 0]])
    schemes = ", ".join(f"{n['modality']}: {n['scheme']}" for n in plan.normalisation)
    rows = [
        ("data", f"{plan.data} ({fp.get('layout')}, {len(fp.get('cases', []))} cases)"),
        ("median spacing (mm)", _tuple(np.median(spacings, axis=0))),
        ("median shape", _tuple(np.median(shapes, axis=0), "{:g}")),
        ("modalities", ", ".join(plan.modalities)),
        (
            "dims",
            f"{plan.dims}-D"
            + (f" (slices across axis {plan.slice_axis})" if plan.dims == 2 else ""),
        ),
        ("target spacing (mm)", _tuple(plan.target_spacing)),
        ("patch size", _tuple(plan.patch_size, "{:d}")),
        ("batch size", str(plan.batch_size)),
        (
            "depth (stages)",
            f"{plan.depth}, halvings per axis {_tuple(plan.pools_per_axis, '{:d}')}",
        ),
        ("normalisation", schemes),
        ("memory", f"{_size(plan.estimated_memory)} estimated of {_size(plan.memory_budget)}"),
    ]
    if plan.overridden:
        rows.append(("given, not derived", ", ".join(plan.overridden)))
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines += ["", "why:"] + [f"  - {reason}" for reason in plan.reasons]
    return "\n".join(lines)


def _tuple(values, pattern: str = "{:.3g}") -> str:
    return " x ".join(pattern.format(v) for v in values)


def write_plan(path, plan: Plan) -> None:
    """Write ``plan`` as JSON to ``path`` atomically (a crash leaves the old file or none)."""
    write_json(path, plan.to_json())
