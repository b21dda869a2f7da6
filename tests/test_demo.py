"""The demo that the README's first command runs."""

from __future__ import annotations

import json

import pytest

from segkit import weights
from segkit.demo import run_demo, sample_dir


def test_bundled_sample_is_complete():
    folder = sample_dir()
    images = sorted(p.stem for p in (folder / "images").glob("*.png"))
    masks = sorted(p.stem.removesuffix("_mask") for p in (folder / "masks").glob("*_mask.png"))
    assert images == masks and len(images) == 6
    assert (folder / "ATTRIBUTION.md").read_text().count("CC BY 4.0") >= 1


@pytest.mark.backend
def test_demo_writes_overlays_and_a_report(tmp_path):
    if weights.available():
        report = run_demo(tmp_path)
    else:
        with pytest.warns(UserWarning, match="RANDOM weights"):
            report = run_demo(tmp_path)
    assert len(list(tmp_path.glob("*_overlay.png"))) == 6
    assert json.loads((tmp_path / "report.json").read_text())["n_images"] == 6
    assert "dice" in report["table"]
