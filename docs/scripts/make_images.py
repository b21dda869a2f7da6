"""Regenerate the pictures in docs/images/ from the tutorials' own output.

    python docs/scripts/make_images.py

The tutorials run as the tests run them (see ``run_tutorials.py``); their overlays and curves
are copied here. The Home page's picture is drawn from the bundled sample and the shipped weights;
the chart on "Deploying on CPU" from that page's own tables of measured numbers.

    python docs/scripts/make_images.py --only charts   # the pictures that need no tutorial run
    python docs/scripts/make_images.py --only volumes.md   # one tutorial's pictures
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_tutorials import DOCS, ROOT, run_page  # noqa: E402

IMAGES = DOCS / "images"
SHARED_DATA = Path(os.environ.get("SEGKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))

# tutorial page -> {file it writes: picture in docs/images}
FROM_TUTORIALS = {
    "five-minutes.md": {"masks/172_overlay.png": "five-minutes-overlay.png"},
    "train-and-compare.md": {
        "runs/unet/curves.png": "train-curves.png",
        "overlays/25_overlay.png": "train-overlay.png",
    },
    "explain.md": {
        f"saliency/{method}/172_saliency.png": f"explain/{method}.png"
        for method in ("gradient", "smoothgrad", "gradcam", "occlusion")
    },
    "tumour-types.md": {"predicted/770_overlay.png": "tumour-types-overlay.png"},
}

# Pictures drawn from a tutorial's output folder: page -> {picture: function(folder, picture)}.
# Filled in below, once the functions exist.
DRAWN_FROM_TUTORIALS = {}

# Pictures copied at a smaller width (pixels), to keep the pages light.
WIDTHS = {}


def copy_picture(source: Path, target: str) -> None:
    """Copy a tutorial's picture into docs/images/, made smaller if `WIDTHS` says so."""
    from PIL import Image

    path = IMAGES / target
    path.parent.mkdir(parents=True, exist_ok=True)
    if target not in WIDTHS:
        shutil.copyfile(source, path)
        return
    picture = Image.open(source).convert("RGB")
    height = round(picture.height * WIDTHS[target] / picture.width)
    picture.resize((WIDTHS[target], height), Image.Resampling.LANCZOS).save(path, optimize=True)


def home_picture(path: Path) -> None:
    """One slice per tumour type with its hand-drawn outline and, when weights ship, the
    outline the demo's model draws (the most accurate of the notebook's networks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from segkit import data, weights
    from segkit.demo import demo_model, sample_dir
    from segkit.inference import load_model, to_mask

    samples = data.find_samples(sample_dir())
    chosen = {}
    for sample in samples:
        chosen.setdefault(sample.label_name, sample)
    shipped = weights.available(demo_model())
    segmenter = load_model(shipped[0]) if shipped else None
    figure, axes = plt.subplots(1, len(chosen), figsize=(9, 3.3), constrained_layout=True)
    for axis, (label, sample) in zip(axes, sorted(chosen.items())):
        image, mask = data.read_pair(sample)
        axis.imshow(image.squeeze(), cmap="gray")
        axis.contour(mask.squeeze(), levels=[0.5], colors=["#2bd62b"], linewidths=1.2)
        if segmenter is not None:
            ((_, _, probs),) = segmenter.probabilities([sample.image])
            predicted = to_mask(probs).squeeze()
            axis.contour(predicted, levels=[0.5], colors=["#ff3030"], linewidths=1.2)
        axis.set_title(f"{label} (slice {sample.key})", fontsize=10)
        axis.set_axis_off()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def volume_montage(folder: Path, path: Path, case: str = "TCGA_HT_7694_19950404") -> None:
    """The volumes tutorial's held-out case: every slice that holds the true tumour or a
    prediction, with the release's outline (green) beside the network's (red) and the slice's
    index along the axis written large enough to read."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib
    import numpy as np
    import tifffile
    from natsort import natsorted

    def slices(volume):  # the tutorial's to_volume, undone: (W, H, K) voxels -> (K, H, W)
        return np.asarray(volume)[::-1, ::-1].transpose(2, 1, 0)

    scan = slices(nib.load(folder / "lgg-volumes/imagesTs" / f"{case}.nii.gz").dataobj)
    predicted = slices(nib.load(folder / "masks" / f"{case}_mask.nii.gz").dataobj) > 0
    tiffs = SHARED_DATA / "lgg-mri-segmentation/kaggle_3m" / case
    files = natsorted(p for p in tiffs.glob("*.tif") if not p.stem.endswith("_mask"))
    truth = np.stack([tifffile.imread(p.with_name(f"{p.stem}_mask.tif")) > 0 for p in files])
    shown = [k for k in range(len(scan)) if truth[k].any() or predicted[k].any()]
    columns = 6
    rows = -(-len(shown) // columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(1.6 * columns, 1.75 * rows), constrained_layout=True
    )
    for axis in axes.ravel():
        axis.set_axis_off()
    for axis, k in zip(axes.ravel(), shown):
        axis.imshow(scan[k], cmap="gray")
        for mask, colour in ((truth[k], "#2bd62b"), (predicted[k], "#ff3030")):
            if mask.any():
                axis.contour(mask, levels=[0.5], colors=[colour], linewidths=1.0)
        axis.set_title(f"slice {k}", fontsize=11)
    figure.suptitle(f"{case}: the release's outline (green) and the network's (red)", fontsize=11)
    figure.savefig(path, dpi=80)
    plt.close(figure)


DRAWN_FROM_TUTORIALS["volumes.md"] = {"volumes/montage.png": volume_montage}


def _table(page: str, first_header: str) -> list[dict[str, str]]:
    """The rows of the Markdown table on ``page`` whose header starts with ``first_header``;
    an empty cell repeats the cell above it (how the page groups rows by model)."""
    lines = (DOCS / page).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows, previous = [], {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        row = {k: v or previous.get(k, "") for k, v in zip(header, cells)}
        rows.append(row)
        previous = row
    return rows


def speed_dice_chart(path: Path) -> None:
    """Images per second at batch 8 against per-image Dice, one point per model and variant,
    from the two tables of measured numbers on "Deploying on CPU"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    speed = _table("deploy-cpu.md", "model | variant | images/s, batch 1")
    dice = _table("deploy-cpu.md", "model | variant | per-image Dice, network alone")
    markers = {"float32 Keras": "o", "float32 ONNX": "s", "int8 ONNX": "^", "bfloat16 Keras": "D"}
    colours = {}
    figure, axis = plt.subplots(figsize=(7.5, 4.2), constrained_layout=True)
    for fast, score in zip(speed, dice, strict=True):
        assert (fast["model"], fast["variant"]) == (score["model"], score["variant"])
        model = fast["model"].strip("`")
        variant = re.sub(r" \(.*\)", "", fast["variant"])
        colour = colours.setdefault(model, f"C{len(colours)}")
        axis.scatter(
            float(fast["images/s, batch 8"]),
            float(score["per-image Dice, network alone"]),
            marker=markers[variant],
            s=60,
            color=colour,
            label=f"{model}, {variant}",
        )
    axis.set_xscale("log")
    axis.set_xlabel("images per second, batch 8 (2-core Xeon, log scale)")
    axis.set_ylabel("per-image Dice, 260 test blocks\n(network alone, no inference defaults)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7.5, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    pages = sorted(FROM_TUTORIALS.keys() | DRAWN_FROM_TUTORIALS.keys())
    parser.add_argument(
        "--only",
        choices=["charts", "home", *pages],
        action="append",
        help="Make only these pictures: the charts drawn from pages' tables, the Home page's, "
        "or a tutorial's (repeat the option for several); all by default.",
    )
    args = parser.parse_args()
    only = set(args.only or ["charts", "home", *pages])
    IMAGES.mkdir(exist_ok=True)
    if "charts" in only:
        speed_dice_chart(IMAGES / "deploy-cpu-speed-dice.png")
    if "home" in only:
        home_picture(IMAGES / "home-sample.png")
    for page in sorted(only & set(pages)):
        with tempfile.TemporaryDirectory() as tmp:
            # A longer limit than the tests': the volumes page trains for minutes, more on a
            # busy machine.
            result = run_page(DOCS / "tutorials" / page, Path(tmp), SHARED_DATA, timeout=1800)
            if result.returncode:
                print(result.stdout, result.stderr, file=sys.stderr)
                return 1
            for source, target in FROM_TUTORIALS.get(page, {}).items():
                copy_picture(Path(tmp) / source, target)
            for target, draw in DRAWN_FROM_TUTORIALS.get(page, {}).items():
                (IMAGES / target).parent.mkdir(parents=True, exist_ok=True)
                draw(Path(tmp), IMAGES / target)
    print("\n".join(sorted(str(p.relative_to(ROOT)) for p in IMAGES.glob("*.png"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
