"""Running predict and evaluate past one machine: Ray Data maps the files over an actor pool.

``segkit.predict(..., engine="ray")``, `segkit.volumes.predict_volumes` and
``segkit.evaluate(..., engine="ray")`` cut their inputs into *units* (an image file, a volume,
a case to score) and hand them to `map_units`, which puts them in a Ray Dataset and runs
``map_batches`` over a fixed pool of actors: each actor loads the model once, then does the
same per-file work the local engine does (`segkit.inference`, `segkit.volumes`,
`segkit.reports` own that work; this module knows nothing of models). The driver collects each
unit's status, timing and result in input order and shows progress.

Ray Data restarts an actor that dies and runs the unit it was working on again (its default
for actor pools: without limit, so a unit that kills its actor every time, say a file too
large for a worker's memory, keeps the run from ending). Outputs are written atomically
(`segkit._io.atomic_path`), so a kill leaves no half-written file under an output's name, and
`remove_leftovers` clears the temporary files a killed writer left behind.

Ray is an optional extra (``pip install 'segkit[ray]'``): importing this module does not import
it; `require_ray` does, and says which extra is missing when it is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from segkit._io import write_json
from segkit.progress import Progress

#: The engines predict and evaluate run on.
ENGINES = ("local", "ray")
#: The JSON summary a ray run of predict writes into its output folder.
SUMMARY_FILE = "ray-summary.json"
#: Environment variables each actor takes from the driver: the Keras backend, and TensorFlow's
#: log level (the command line quiets TensorFlow's start-up chatter).
FORWARDED = ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")
# What `segkit._io.atomic_path` names its temporary files: ".<stem>.<8 random chars><suffix>".
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.[A-Za-z0-9]+$")

__all__ = [
    "ENGINES",
    "SUMMARY_FILE",
    "RayOptions",
    "check_engine",
    "check_failures",
    "file_records",
    "map_units",
    "remove_leftovers",
    "require_ray",
    "write_summary",
]


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a ray run goes.

    Attributes:
        address: the Ray cluster to join: ``"auto"`` (the one `ray start` started on this
            machine, or ``RAY_ADDRESS``) or ``"HOST:PORT"``; None starts a local Ray runtime
            with this machine's cores (or joins the runtime this process already started).
        workers: actors, each holding one copy of the model; None: as many as the cluster's
            CPUs (or, with ``gpus_per_worker``, GPUs) allow.
        cpus_per_worker: CPUs Ray reserves for each actor.
        gpus_per_worker: GPUs Ray reserves for each actor (fractions share a GPU).
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    def __post_init__(self):
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.cpus_per_worker <= 0:
            raise ValueError(f"cpus_per_worker must be above 0, got {self.cpus_per_worker}")
        if self.gpus_per_worker < 0:
            raise ValueError(f"gpus_per_worker must be 0 or more, got {self.gpus_per_worker}")


def check_engine(engine: str) -> None:
    """Raise ValueError, naming the choices, for an engine that is not one of `ENGINES`."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")


def require_ray():
    """The ``ray`` module, with Ray Data loaded.

    Raises:
        ImportError: one line naming the extra to install, when Ray is missing.
    """
    try:
        import ray
        import ray.data  # noqa: F401  (map_batches lives here)
    except ImportError:
        raise ImportError("engine 'ray' needs Ray Data: pip install 'segkit[ray]'") from None
    return ray


@contextlib.contextmanager
def _connected(options: RayOptions) -> Iterator:
    """Ray, initialised: joined to ``options.address``, or a local runtime started here (and
    shut down after); a runtime this process already started is used as it is."""
    ray = require_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=options.address, include_dashboard=False, logging_level="WARNING")
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # no line per dataset run
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _pool_size(ray, options: RayOptions) -> int:
    if options.workers is not None:
        return options.workers
    resources = ray.cluster_resources()
    if options.gpus_per_worker:
        return max(1, int(resources.get("GPU", 0) // options.gpus_per_worker))
    return max(1, int(resources.get("CPU", 1) // options.cpus_per_worker))


class _ModelWorker:
    """One actor of the pool: loads the model once, then works unit after unit.

    A unit that raises is recorded as failed with its error, and the actor goes on; a unit
    whose actor dies is retried by Ray on a restarted actor.
    """

    def __init__(self, load: Callable[[], object], work: Callable, environment: dict):
        # The driver's Keras backend, set before the model load imports Keras.
        os.environ.update(environment)
        self.state = load()
        self.work = work
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict) -> dict:
        outcomes = []
        for unit in batch["unit"]:
            start = time.perf_counter()
            outcome = {"status": "done", "error": None, "result": None, "worker": self.name}
            try:
                outcome["result"] = self.work(self.state, pickle.loads(unit))
            except Exception as exc:  # recorded per unit: one bad file does not stop the run
                outcome.update(status="failed", error=str(exc) or type(exc).__name__)
            outcome["seconds"] = time.perf_counter() - start
            outcomes.append(pickle.dumps(outcome))
        return {"index": batch["index"], "outcome": outcomes}


def map_units(
    units: Sequence,
    load: Callable[[], object],
    work: Callable,
    options: RayOptions,
    *,
    sizes: Sequence[int] | None = None,
    what: str = "files",
    label: str = "predict",
    progress: bool = False,
) -> tuple[list[dict], dict]:
    """Run ``work(load(), unit)`` for every unit on a Ray actor pool.

    Args:
        units: picklable pieces of work, e.g. an image path or a case's samples.
        load: a picklable function (a module-level one, or a `functools.partial` of one) that
            each actor calls once, e.g. to load the model.
        work: a picklable function of ``(what load returned, unit)``; its return value must
            pickle too.
        options: the cluster and the pool (`RayOptions`).
        sizes: how many of ``what`` each unit counts for the progress line (default 1 each).
        what: what the progress line counts.
        label: what the progress line calls the job.
        progress: show the count, rate and time left on standard error.

    Returns:
        One outcome per unit, in the units' order: ``status`` (``"done"`` or ``"failed"``),
        ``error`` (the message, or None), ``result`` (``work``'s), ``seconds`` (spent on the
        unit, the model load not counted) and ``worker`` (``host:pid``); and how the run
        went: ``address`` (the cluster's), ``workers``, ``cpus_per_worker``,
        ``gpus_per_worker``, ``seconds`` (wall-clock, Ray's start included).
    """
    sizes = list(sizes) if sizes is not None else [1] * len(units)
    started = time.perf_counter()
    outcomes: list[dict | None] = [None] * len(units)
    with _connected(options) as ray:
        workers = _pool_size(ray, options)
        run = {
            "address": ray.get_runtime_context().gcs_address,
            "workers": workers,
            "cpus_per_worker": options.cpus_per_worker,
            "gpus_per_worker": options.gpus_per_worker,
        }
        if units:
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False  # segkit's own line counts files, not blocks
            rows = [{"index": i, "unit": pickle.dumps(u)} for i, u in enumerate(units)]
            # A block per unit, so that every actor gets work however few units there are.
            dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
            environment = {name: os.environ[name] for name in FORWARDED if name in os.environ}
            done = dataset.map_batches(
                _ModelWorker,
                fn_constructor_args=(load, work, environment),
                batch_size=1,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=options.cpus_per_worker,
                num_gpus=options.gpus_per_worker or None,
            )
            label = f"{label} (ray, {workers} workers)"
            shown = Progress(sum(sizes), what, label, enabled=progress)
            for row in done.iter_rows():
                index = int(row["index"])
                outcomes[index] = pickle.loads(row["outcome"])
                shown.update(sizes[index])
    run["seconds"] = time.perf_counter() - started
    return outcomes, run


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Remove the temporary files `segkit._io.atomic_path` left in ``folder`` when a killed
    process could not clean up; returns them. Run it only when no writer is at work there."""
    folder = Path(folder)
    left = [p for p in folder.iterdir() if p.is_file() and _TEMPORARY.match(p.name)]
    for path in left:
        path.unlink(missing_ok=True)
    return left


def file_records(
    inputs: Sequence, outputs: Sequence, todo: Sequence[int], outcomes: Sequence[dict]
) -> list[dict]:
    """Each input's record for the summary: ``input``, ``output``, ``status`` (``"skipped"``
    for those not in ``todo``, the positions `map_units` ran, whose ``outcomes`` these are),
    ``seconds``, ``worker``, ``error``."""
    records = [
        {
            "input": str(i),
            "output": str(o),
            "status": "skipped",
            "seconds": None,
            "worker": None,
            "error": None,
        }
        for i, o in zip(inputs, outputs)
    ]
    for position, outcome in zip(todo, outcomes):
        records[position].update(
            status=outcome["status"],
            seconds=round(outcome["seconds"], 4),
            worker=outcome["worker"],
            error=outcome["error"],
        )
    return records


def write_summary(path: str | Path, run: dict, files: list[dict], **about) -> dict:
    """Write a ray run's JSON summary: ``about`` (e.g. the model), the run (see `map_units`),
    the counts of files ``done``, ``skipped`` and ``failed``, and each file's record."""
    counts = {s: sum(f["status"] == s for f in files) for s in ("done", "skipped", "failed")}
    summary = {"engine": "ray", **about, **run, **counts, "files": files}
    write_json(path, summary)
    return summary


def check_failures(summary: dict, where: str | Path) -> None:
    """Raise one line about the files that failed, if any, pointing to the summary.

    Raises:
        ValueError: some files failed; the first is named with its error.
    """
    failed = [f for f in summary["files"] if f["status"] == "failed"]
    if failed:
        first = failed[0]
        raise ValueError(
            f"{len(failed)} of {len(summary['files'])} inputs failed (first: {first['input']}: "
            f"{first['error']}); the others are written, each file's status is in {where}"
        )
