"""Choosing a model's inference settings on validation data, the way nnU-Net chooses its
post-processing by cross-validation.

`tune_inference` predicts every validation slice once per transform of the test-time
augmentation (TTA) settings it tries: the probabilities of ``"none"``, ``"flips"`` and
``"dihedral"`` all come from the same 8 passes, and are kept in memory at each mask's own size
(280 slices of 256x256: 220 MB for the three). It then scores every post-processing rule of
`POSTPROCESSING` at every threshold of `THRESHOLDS` on them, making the masks
``segkit evaluate`` makes, and returns the settings with the highest per-image mean Dice, with
the table of all scores. Tune on validation data only, so that the test set still measures the
chosen settings fairly.

```python
import segkit
from segkit import data
from segkit.inference import save_run_defaults
from segkit.tuning import tune_inference

_, val, _ = data.Split.load("runs/unet/split.json").select(data.find_samples("data/figshare"))
tuning = tune_inference(segkit.load_model("runs/unet", defaults=False), val)
print(tuning.format_table())
save_run_defaults("runs/unet", tuning.best, **tuning.record("its validation split"))
```

``tools/tune_inference.py`` does this for a run folder or a weights file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np

from segkit import data
from segkit.inference import TTA_MODES, InferenceSettings, Segmenter
from segkit.postprocess import PostProcessing
from segkit.progress import Progress
from segkit.resize import resize_probabilities

__all__ = ["POSTPROCESSING", "THRESHOLDS", "Tuning", "tune_inference"]

#: The thresholds tried, 0.5 first and then outwards, so that of equal scores the one nearest
#: 0.5 wins.
THRESHOLDS = (0.5, 0.45, 0.55, 0.4, 0.6, 0.35, 0.65, 0.3, 0.7)

#: The post-processing tried: each way of treating small regions (keep all, drop those under 20
#: or 100 pixels, keep the largest), with and without filling holes and "at least one
#: region"; the simplest first, so that of equal scores the simplest wins.
POSTPROCESSING = tuple(
    PostProcessing(keep_largest=largest, min_size=min_size, fill_holes=fill, at_least_one=one)
    for one, fill, (largest, min_size) in product(
        (False, True), (False, True), ((False, 0), (False, 20), (False, 100), (True, 0))
    )
)


@dataclass
class Tuning:
    """What `tune_inference` found.

    Attributes:
        best: the settings of the highest per-image mean Dice (the first in the grid's order
            among equal scores: no TTA before flips before dihedral, the simplest
            post-processing and the threshold nearest 0.5 first).
        rows: one per setting tried, in the grid's order: ``tta``, ``postprocess`` (its
            text), ``threshold``, ``dice_mean`` (per-image mean Dice) and ``misses`` (images
            with a target where the mask is empty).
        images: how many images were scored.
    """

    best: InferenceSettings
    rows: list[dict]
    images: int

    def score(self, settings: InferenceSettings) -> dict:
        """The row of ``settings``.

        Raises:
            KeyError: settings that were not tried.
        """
        key = (settings.tta, str(settings.postprocess), settings.threshold)
        for row in self.rows:
            if (row["tta"], row["postprocess"], row["threshold"]) == key:
                return row
        raise KeyError(f"{settings} was not tried")

    def record(self, chosen_on: str) -> dict:
        """What chose the settings, as JSON values: ``chosen_on`` (the data), the best and the
        plain settings' scores and the whole table."""
        record = {
            "chosen_on": chosen_on,
            "images": self.images,
            "dice_mean": self.score(self.best)["dice_mean"],
        }
        if _tried(self, InferenceSettings()):
            record["plain_dice_mean"] = self.score(InferenceSettings())["dice_mean"]
        return {**record, "table": self.rows}

    def format_table(self, rows: int | None = None) -> str:
        """Per TTA setting and post-processing, the best threshold and its score, best first
        (the first ``rows`` of them, or all)."""
        best: dict[tuple, dict] = {}
        for row in self.rows:
            key = (row["tta"], row["postprocess"])
            if key not in best or row["dice_mean"] > best[key]["dice_mean"]:
                best[key] = row
        ranked = sorted(best.values(), key=lambda r: -r["dice_mean"])[:rows]
        width = max(14, *(len(r["postprocess"]) for r in ranked))
        lines = [f"{'tta':<9} {'postprocess':<{width}} {'threshold':>9} {'dice':>6} {'misses':>6}"]
        for r in ranked:
            lines.append(
                f"{r['tta']:<9} {r['postprocess']:<{width}} {r['threshold']:>9.2f} "
                f"{r['dice_mean']:>6.4f} {r['misses']:>6}"
            )
        lines.append(
            f"(best threshold of each; dice = per-image mean over {self.images} images; "
            f"chosen: {self.best})"
        )
        return "\n".join(lines)


def _tried(tuning: Tuning, settings: InferenceSettings) -> bool:
    try:
        tuning.score(settings)
    except KeyError:
        return False
    return True


def tune_inference(
    segmenter: Segmenter,
    samples: Sequence[data.Sample],
    *,
    ttas: Sequence[str] = TTA_MODES,
    postprocessing: Sequence[PostProcessing] = POSTPROCESSING,
    thresholds: Sequence[float] = THRESHOLDS,
    batch_size: int = 8,
    progress: bool = False,
) -> Tuning:
    """Choose a binary model's threshold, TTA and post-processing on validation samples.

    Args:
        segmenter: a one-channel model (its own settings are ignored).
        samples: validation samples with true masks (never the test set).
        ttas: the TTA settings to try.
        postprocessing: the post-processing rules to try.
        thresholds: the thresholds to try.
        batch_size: images per forward pass (each with its TTA copies).
        progress: show the count, rate and time left on standard error.

    Returns:
        The best settings and the table of all scores (see `Tuning`).

    Raises:
        ValueError: no samples, a multi-class model, or an unknown TTA setting.
    """
    if not samples:
        raise ValueError("tune_inference needs validation samples; got none")
    if segmenter.prep.num_classes is not None:
        raise ValueError(
            f"tune_inference chooses the settings of one-channel models; {segmenter.name} "
            f"predicts {segmenter.prep.num_classes} classes"
        )
    cached = {mode: [] for mode in ttas}
    truths = []
    shown = Progress(len(samples), "images", "tune", enabled=progress)
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        pairs = [data.read_pair(s, segmenter.prep.channels) for s in chunk]
        predicted = segmenter.predict_tta([image for image, _ in pairs], ttas)
        for i, (_, truth) in enumerate(pairs):
            truths.append(truth)
            for mode in ttas:
                cached[mode].append(resize_probabilities(predicted[mode][i], truth.shape))
        shown.update(len(chunk))

    rows = []
    for tta, rules, threshold in product(ttas, postprocessing, thresholds):
        settings = InferenceSettings(threshold=threshold, tta=tta, postprocess=rules)
        masks = segmenter.with_settings(postprocess=rules)
        dice, misses = [], 0
        for probabilities, truth in zip(cached[tta], truths):
            mask = masks.to_mask(probabilities, threshold)
            dice.append(_dice(mask > 0, truth > 0))
            misses += bool(truth.any() and not mask.any())
        rows.append(
            {
                **settings.to_dict(),
                "dice_mean": float(np.mean(dice)),
                "misses": misses,
            }
        )
    best = max(rows, key=lambda r: r["dice_mean"])  # the first of equal scores
    chosen = InferenceSettings.from_dict({k: best[k] for k in ("threshold", "tta", "postprocess")})
    return Tuning(chosen, rows, len(truths))


def _dice(pred: np.ndarray, true: np.ndarray) -> float:
    """Per-image Dice as `segkit.evaluation.score` gives it: 1.0 where both masks are empty."""
    total = int(pred.sum()) + int(true.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(pred & true)) / total
