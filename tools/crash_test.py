"""Kill a small training run with SIGKILL at random instants, resume it each time, and check it.

    python tools/crash_test.py --kills 20 --seed 0        # or: make crash-test

What it checks, after every kill:
- the run folder is readable: its config and split load, and so does ``last.keras`` where one
  exists (a kill may land while a checkpoint is being written);
- ``segkit train --resume`` starts again from it.
At the end the run is resumed to completion and its final weights and validation Dice are
compared with an uninterrupted run of the same settings, beside a second uninterrupted run
(the backend's own run-to-run noise). Prints the figures as JSON; exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from segkit import data
from segkit.demo import sample_dir
from segkit.runs import RunFolder

SETTINGS = [
    "--data", str(sample_dir()), "--image-size", "64", "--batch-size", "2", "--epochs", "30",
    "--model-config", "base_filters=8", "--model-config", "depth=2", "--quiet",
]  # fmt: skip


def segkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "segkit.cli", *args]


def train(run: Path, manifest: Path, cache: Path) -> None:
    command = segkit("train", "--out", str(run), "--manifest", str(manifest), "--cache", str(cache))
    subprocess.run([*command, *SETTINGS], check=True, capture_output=True)


def check_readable(run: RunFolder) -> str:
    """What the folder holds; raises if any of it cannot be read."""
    if not run.holds_run():
        return "empty"
    run.config()
    run.split()
    if not run.finished_an_epoch():
        return "config only"
    state = run.state()
    run.load_last()
    return f"epoch {state.epoch}"


def weights_of(run: Path) -> list[np.ndarray]:
    return RunFolder(run).load_best().get_weights()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--latest", type=float, default=None, help="latest kill in seconds (default: a whole run)"
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="segkit-crash-"))
    keys = [s.key for s in data.find_samples(sample_dir())]
    manifest = work / "split.json"
    data.Split("random", 0, (0.5, 0.25, 0.25), tuple(keys[:4]), (keys[4],), (keys[5],)).save(
        manifest
    )
    cache = work / "cache"
    durations = []
    for name in ("whole", "whole-again"):
        start = time.perf_counter()
        train(work / name, manifest, cache)
        durations.append(time.perf_counter() - start)
    # Kill anywhere from start-up to the end of a whole run: during start-up, an epoch,
    # validation, or while a checkpoint is being written.
    latest = args.latest or min(durations)

    runs: list[Path] = []
    seen, failures = [], []
    run = None
    for kill in range(args.kills):
        if run is None:  # a new run; each is killed until it finishes
            run = work / f"killed-{len(runs)}"
            runs.append(run)
            command = segkit("train", "--out", str(run), "--manifest", str(manifest))
            command = [*command, "--cache", str(cache), *SETTINGS]
        else:
            command = segkit("train", "--resume", str(run), "--quiet")
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        after = rng.uniform(0.1 * latest, 0.5 * latest)
        try:
            process.wait(timeout=after)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        if process.returncode not in (0, -signal.SIGKILL):
            failures.append(f"kill {kill}: exit {process.returncode}: {process.stderr.read()!r}")
        try:
            held = check_readable(RunFolder(run))
        except Exception as exc:  # anything unreadable is what this test exists to find
            held = f"UNREADABLE: {type(exc).__name__}: {exc}"
            failures.append(f"kill {kill}: {held}")
        finished = process.returncode == 0
        seen.append({"kill": kill, "run": run.name, "after_s": round(after, 1), "held": held})
        print(json.dumps(seen[-1]), flush=True)
        if finished:
            run = None
    if run is not None:
        subprocess.run(segkit("train", "--resume", str(run), "--quiet"), check=True)
    leftovers = sorted(f"{r.name}/{p.name}" for r in runs for p in r.iterdir() if p.name[0] == ".")

    whole, again = weights_of(work / "whole"), weights_of(work / "whole-again")

    def gap(first, second) -> float:
        return max(float(np.abs(a - b).max()) for a, b in zip(first, second))

    summary = {
        "whole_run_seconds": [round(d, 1) for d in durations],
        "kills": len(seen),
        "runs_killed": len(runs),
        "held_at_kill": {
            h: sum(s["held"] == h for s in seen) for h in sorted({s["held"] for s in seen})
        },
        "failures": failures,
        "partial_files_left": leftovers,
        "max_weight_difference_whole_vs_whole_again": gap(whole, again),
        "max_weight_difference_resumed_vs_whole": [gap(whole, weights_of(r)) for r in runs],
        "best_val_dice": {r.name: RunFolder(r).state().best_dice for r in [work / "whole", *runs]},
        "folder": str(work),
    }
    print(json.dumps(summary, indent=2))
    sys.exit(1 if failures or leftovers else 0)


if __name__ == "__main__":
    main()
