"""Shared fixtures of the benchmark suite (run with ``python -m benchmarks.report``).

``SEGKIT_BENCH_SIZE`` sets the image size of the model benchmarks (default 256, the
notebook's); ``SEGKIT_BENCH_SIZE=64`` is a smoke test that finishes in minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULT_MARK = "BENCHMARK-RESULT "
#: Seconds one worker process may take before the benchmark fails.
WORKER_TIMEOUT_S = 1800


def bench_size() -> int:
    """Image height and width of the model benchmarks, from ``SEGKIT_BENCH_SIZE``."""
    return int(os.environ.get("SEGKIT_BENCH_SIZE", "256"))


def run_worker(*args: str) -> dict:
    """Run ``python -m benchmarks.worker ARGS`` in a fresh process and return its JSON record.

    Raises:
        pytest.fail.Exception: the worker failed; the message holds the end of its output.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}
    env.pop("KERAS_BACKEND", None)  # the worker chooses the backend itself
    command = [sys.executable, "-m", "benchmarks.worker", *args]
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT_S,
        check=False,
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line.removeprefix(RESULT_MARK))
    output = (done.stdout + done.stderr)[-3000:]
    pytest.fail(f"{' '.join(command[1:])} exited with {done.returncode}:\n{output}")


@pytest.fixture(scope="session")
def measure():
    """``measure(*worker_args)``: a worker's record, measured once per session per arguments
    (a row shown in two groups, such as TensorFlow ``predict``, is measured once)."""
    cache: dict[tuple[str, ...], dict] = {}

    def cached(*args: str) -> dict:
        if args not in cache:
            cache[args] = run_worker(*args, "--size", str(bench_size()))
        return cache[args]

    return cached
