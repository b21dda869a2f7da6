"""``segkit predict --engine ray`` beside local predict, on the same files, in one run.

Run with ``pytest benchmarks/test_bench_ray.py --benchmark-only`` (or through
``python -m benchmarks.report``). Each row segments the same ``SEGKIT_BENCH_RAY_FILES`` Figshare
slices (default 240) with the shipped ``fast_unet.figshare`` weights, TTA off, into a fresh
folder, end to end: the model load is timed in every row, as a user would wait for it. Keras
and TensorFlow are imported and the model traced once before any row (untimed), so the first
row does not pay for them; the ray workers start fresh processes, and pay for them in the time.

* local predict, 8 images per forward pass (its default): the reference;
* local predict, 1 image per forward pass: what the ray engine does for each image, so the
  difference between this row and the one-worker row is what the engine itself adds;
* the ray engine with 1 and 2 workers (1 CPU reserved each) on a local Ray runtime started
  before the timing, as a cluster would already be running. Its start is reported apart.

Each row runs once: the ratios, not the seconds, are the result, and they hold only for a
machine with as many cores as this one's (``os.cpu_count()``, in ``extra_info``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from segkit.ray_engine import SUMMARY_FILE

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SEGKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
IMAGES = SHARED_DATA / "figshare-brain-tumor-256" / "images"
MODEL = "fast_unet.figshare"
FILES = int(os.environ.get("SEGKIT_BENCH_RAY_FILES", "240"))

#: (row label, engine, batch size, workers)
ROWS = [
    ("local predict, batch 8 (reference)", "local", 8, None),
    ("local predict, batch 1", "local", 1, None),
    ("--engine ray, 1 worker", "ray", 1, 1),
    ("--engine ray, 2 workers", "ray", 1, 2),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    found = sorted(IMAGES.glob("*.png"), key=lambda p: int(p.stem))[:FILES]
    if len(found) < FILES:
        pytest.skip(f"{FILES} Figshare slices not found in {IMAGES} (set SEGKIT_SHARED_DATA)")
    return found


@pytest.fixture(scope="module")
def ray_runtime():
    ray = pytest.importorskip("ray", reason="the ray extra: pip install 'segkit[ray]'")
    folder = tempfile.mkdtemp(prefix="segkit-ray-", dir="/tmp")
    start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, _temp_dir=folder)
    started_s = time.perf_counter() - start
    yield started_s
    ray.shutdown()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def warm(files, tmp_path_factory) -> None:
    """Import the backend and trace the model once, untimed."""
    import segkit

    segkit.predict(MODEL, files[:8], tmp_path_factory.mktemp("warm"), tta="none")


@pytest.mark.parametrize("label, engine, batch, workers", ROWS, ids=[r[0] for r in ROWS])
def test_predict_throughput(
    benchmark, files, warm, ray_runtime, tmp_path, label, engine, batch, workers
):
    import segkit
    from segkit.ray_engine import RayOptions

    benchmark.group = f"predict {len(files)} Figshare slices: local vs --engine ray"
    options = {"engine": engine, "batch_size": batch}
    if engine == "ray":
        options["ray"] = RayOptions(workers=workers)
    out = tmp_path / "masks"

    def run():
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        segkit.predict(MODEL, files, out, tta="none", **options)
        return time.perf_counter() - start

    seconds = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(
        label=label,
        time_s=seconds,
        images_per_s=len(files) / seconds,
        baseline=engine == "local" and batch == 8,
        cpus=os.cpu_count(),
        ray_start_s=round(ray_runtime, 2),
    )
    if engine == "ray":  # the workers' own time on the files, the rest being the engine's
        summary = json.loads((out / SUMMARY_FILE).read_text())
        benchmark.extra_info["worker_file_s"] = sum(f["seconds"] for f in summary["files"])
    assert len(list(out.glob("*_mask.png"))) == len(files)
