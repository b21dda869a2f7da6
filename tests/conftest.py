"""Shared fixtures: the real data beside the project, and the backend under test."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SEGKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))

# JAX compiles each new model's training and validation steps anew, several seconds each on a
# CPU even for the tiny models here, and the tests build the same few models many times. A
# compilation cache turns the repeats into lookups (the programs are the same, so are the
# results). It is set before JAX is imported, so subprocesses inherit it, and it is new for
# each session, so nothing carries over from one to the next.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _jax_cache = tempfile.mkdtemp(prefix="segkit-test-jax-cache-")
    atexit.register(shutil.rmtree, _jax_cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _jax_cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"


def _shared(subdir: str) -> Path:
    path = SHARED_DATA / subdir
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set SEGKIT_SHARED_DATA to its folder)")
    return path


@pytest.fixture(scope="session")
def figshare_256() -> Path:
    """The 2,667 Figshare slices at 256x256 (images/N.png, masks/N_mask.png, labels.csv)."""
    return _shared("figshare-brain-tumor-256")


@pytest.fixture(scope="session")
def figshare_512() -> Path:
    """26 untouched Figshare originals (mostly 512x512), in the same layout."""
    return _shared("figshare-brain-tumor-512-sample")


@pytest.fixture(scope="session")
def lgg_root() -> Path:
    """16 LGG patients: kaggle_3m/<patient>/<patient>_<k>.tif and _<k>_mask.tif."""
    return _shared("lgg-mri-segmentation/kaggle_3m")


@pytest.fixture(scope="session")
def backend() -> str:
    import keras

    return keras.backend.backend()
