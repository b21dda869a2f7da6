"""Regenerate the pictures in docs/images/ from the tutorials' own output.

    python docs/scripts/make_images.py

The tutorials run as the tests run them (see ``run_tutorials.py``); their overlays and curves
are copied here. The Home page's picture is drawn from the bundled sample and the shipped weights.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_tutorials import DOCS, ROOT, run_page  # noqa: E402

IMAGES = DOCS / "images"
SHARED_DATA = ROOT.parent / "shared" / "data"

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
    "volumes.md": {"masks/TCGA_HT_7694_19950404_montage.png": "volumes/montage.png"},
}

# Pictures copied at a smaller width (pixels), to keep the pages light: a montage holds up to 36
# tiles at the scan's own size.
WIDTHS = {"volumes/montage.png": 640}


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


def main() -> int:
    IMAGES.mkdir(exist_ok=True)
    home_picture(IMAGES / "home-sample.png")
    for page, copies in FROM_TUTORIALS.items():
        with tempfile.TemporaryDirectory() as tmp:
            result = run_page(DOCS / "tutorials" / page, Path(tmp), SHARED_DATA)
            if result.returncode:
                print(result.stdout, result.stderr, file=sys.stderr)
                return 1
            for source, target in copies.items():
                copy_picture(Path(tmp) / source, target)
    print("\n".join(sorted(str(p.relative_to(ROOT)) for p in IMAGES.glob("*.png"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
