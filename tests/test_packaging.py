"""The wheel users install: built from the source tree, installed elsewhere, run from there."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from segkit import weights

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = dist.glob("segkit-*.whl")
    return built


def test_wheel_carries_code_sample_weights_and_licence_notes(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "segkit/__init__.py",
        "segkit/models/unet.py",
        "segkit/data/pipeline.py",
        "segkit/sample/ATTRIBUTION.md",
        "segkit/sample/labels.csv",
        "segkit/sample/images/955.png",
        "segkit/sample/masks/955_mask.png",
        "segkit/templates/page.html.j2",
        *(f"segkit/weights/{entry.filename}" for entry in weights.PRETRAINED.values()),
    ):
        assert required in names, required
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "segkit = segkit.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_runs_the_demo(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
    )
    env = {**os.environ, "PYTHONPATH": str(site), "TF_CPP_MIN_LOG_LEVEL": "3"}
    where = subprocess.run(
        [sys.executable, "-c", "import segkit; print(segkit.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    assert where.stdout.strip().startswith(str(site))  # the wheel, not the source tree
    demo = subprocess.run(
        [sys.executable, "-m", "segkit.cli", "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert demo.returncode == 0, demo.stderr
    assert (tmp_path / "demo" / "report.json").is_file()
    # The demo found the wheel's own weights file (the checksum is verified on load).
    assert demo.stdout.splitlines()[0] in {f"model: {name}" for name in weights.available()}
    assert "RANDOM" not in demo.stderr
