"""Data-parallel training on several devices and hosts, through the engines' own APIs.

Every replica holds the whole model and takes an equal part of each global batch; gradients
are summed across replicas before each update. segkit adds no parallelism of its own:

- JAX: `keras.distribution.DataParallel`, on the devices of one host or of several hosts
  joined by `keras.distribution.initialize` (which hands over to `jax.distributed.initialize`
  and its Slurm and Open MPI detection).
- TensorFlow: `tf.distribute.MirroredStrategy`, on one host (Keras 3 does not support
  ``keras.distribution`` there, nor ``MultiWorkerMirroredStrategy``).
- torch: Keras 3.15 has no distribution support; `place` says so.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import keras
import numpy as np

#: Backends that train on several devices, and on several hosts.
MULTI_DEVICE_BACKENDS = ("jax", "tensorflow")
MULTI_HOST_BACKENDS = ("jax",)


@dataclass(frozen=True)
class Placement:
    """Where a run trains: how many replicas, and which process this is among how many.

    ``scope()`` must surround building (or loading), compiling and fitting the model.
    """

    backend: str
    replicas: int = 1
    process_index: int = 0
    process_count: int = 1
    engine: object | None = None  # the MirroredStrategy or DataParallel distribution

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run folder (the others must not race it)."""
        return self.process_index == 0

    def scope(self):
        if self.engine is None:
            return contextlib.nullcontext()
        return self.engine.scope()

    def describe(self) -> dict:
        """What the run folder records about where the run trained."""
        return {"replicas": self.replicas, "processes": self.process_count}


def local_devices(backend: str | None = None) -> list[str]:
    """The devices this process can train on: accelerators where there are any, else CPUs."""
    backend = backend or keras.backend.backend()
    if backend == "jax":
        import jax

        return [str(device) for device in jax.local_devices()]
    if backend == "tensorflow":
        import tensorflow as tf

        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return [device.name for device in devices]
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return ["cpu"]
    return ["cpu"]


def place(
    devices: int | str = 1,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> Placement:
    """Set up data-parallel training on ``devices`` local devices of every process.

    Args:
        devices: ``"all"`` or a count of local devices per process; 1 trains as before.
        coordinator: ``HOST:PORT`` of process 0, for several hosts (JAX only); also read from
            ``KERAS_DISTRIBUTION_JOB_ADDRESSES``, and found by JAX itself under Slurm.
        num_processes: how many processes (one per host) train together.
        process_id: this process's number, 0 to ``num_processes - 1``; 0 writes the run.

    Raises:
        ValueError: the backend cannot train this way; the message says what can.
    """
    backend = keras.backend.backend()
    several_hosts = _several_hosts(coordinator, num_processes)
    if devices in (1, "1") and not several_hosts:
        return Placement(backend)
    if backend not in MULTI_DEVICE_BACKENDS:
        # When Keras releases DataParallel for torch (DDP, on its main branch after 3.15),
        # this backend takes the JAX path below.
        raise ValueError(
            f"devices: Keras {keras.__version__} trains on one device only on {backend}; "
            "several devices work on jax (one or several hosts) and tensorflow (one host): "
            "set KERAS_BACKEND=jax"
        )
    if several_hosts and backend not in MULTI_HOST_BACKENDS:
        raise ValueError(
            f"coordinator: several hosts train only on jax, not {backend} (Keras 3 does not "
            "support MultiWorkerMirroredStrategy): set KERAS_BACKEND=jax"
        )
    if several_hosts:
        _join_hosts(coordinator, num_processes, process_id)
    available = local_devices(backend)
    count = len(available) if devices == "all" else int(devices)
    if not 1 <= count <= len(available):
        raise ValueError(
            f"devices: asked for {devices}, but this process sees {len(available)} "
            f"({', '.join(available)})"
        )
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(available[:count])
        return Placement(backend, replicas=count, engine=strategy)
    import jax

    # Every process contributes the same number of its own devices, in process order: process
    # i's share of a batch is then its i-th contiguous block.
    chosen = [
        device
        for process in range(jax.process_count())
        for device in [d for d in jax.devices() if d.process_index == process][:count]
    ]
    # SegmentationDataset already reads only this process's share of each batch.
    distribution = keras.distribution.DataParallel(devices=chosen, auto_shard_dataset=False)
    return Placement(
        backend,
        replicas=len(chosen),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        engine=distribution,
    )


def _several_hosts(coordinator: str | None, num_processes: int | None) -> bool:
    if coordinator or (num_processes or 1) > 1:
        return True
    if int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")) > 1:
        return True
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1  # JAX reads the rest from Slurm


def _join_hosts(coordinator, num_processes, process_id) -> None:
    """Join the other processes once (JAX refuses a second ``initialize``)."""
    import jax

    if jax.distributed.is_initialized():
        return
    keras.distribution.initialize(coordinator, num_processes, process_id)


def check_loss(placement: Placement, loss, output_shape: tuple) -> None:
    """Refuse a loss that MirroredStrategy would change: one that pools its images.

    MirroredStrategy computes the loss on each replica's part of the batch and averages the
    replicas' gradients. That is the gradient of the whole batch's loss only when the loss is
    a mean over images; the mean of pooled Dice over each half of a batch is not pooled Dice
    over all of it. JAX computes the loss on the global batch, so there any loss trains as on one
    device.
    """
    if placement.backend != "tensorflow" or placement.replicas == 1:
        return
    # Probe: a loss averaged over images gives each image the loss it has alone.
    rng = np.random.default_rng(0)
    shape = tuple(8 if size is None else size for size in output_shape[1:])
    y_true = (rng.random((2, *shape)) > 0.5).astype("float32")
    y_pred = rng.uniform(0.1, 0.9, (2, *shape)).astype("float32")
    together = keras.ops.convert_to_numpy(loss.call(y_true, y_pred))
    alone = [
        keras.ops.convert_to_numpy(loss.call(y_true[i : i + 1], y_pred[i : i + 1])).mean()
        for i in (0, 1)
    ]
    if together.ndim == 0 or not np.allclose(together.reshape(2, -1).mean(axis=1), alone):
        raise ValueError(
            f"loss: {loss.name} pools its images, so MirroredStrategy, which computes it per "
            "replica, would train differently than one device; on tensorflow use a "
            "per-image loss (e.g. --loss-arg per_image=true), or train on jax"
        )
