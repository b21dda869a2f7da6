"""Training a registered model on a data folder, with checkpoints a crash cannot corrupt.

A run folder holds everything about one run:

============== ==========================================================================
``config.json`` every setting of the run (the arguments of `train`) and versions
``split.json``  the split manifest: which samples were train, validation and test
``last.keras``  model, optimizer state and run state after the latest finished epoch
``best.keras``  the model at the best validation Dice so far
``log.csv``     one row of losses, metrics and wall-clock seconds per epoch
``curves.png``  the training curves
============== ==========================================================================

``last.keras`` is the single commit point: it is replaced in one step at the end of each
epoch and carries the epoch count, early-stopping state and history inside it, so
`resume` continues exactly where the last finished epoch left off. The other files are
rewritten from it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

import segkit
from segkit import data, losses, metrics, weights
from segkit._io import atomic_path, check_writable, write_json

#: Loss names accepted by `train`, and the loss each builds.
LOSSES = {
    "dice": losses.DiceLoss,
    "bce_dice": losses.BCEDiceLoss,
    "jaccard": losses.JaccardLoss,
    "focal": losses.FocalLoss,
    "tversky": losses.TverskyLoss,
    "focal_tversky": losses.FocalTverskyLoss,
}

STATE_ENTRY = "segkit_state.json"  # extra member of last.keras holding the run state
MONITOR = "val_dice"

#: Learning-rate schedules accepted by `train`.
SCHEDULES = ("constant", "cosine")

#: Compute precisions accepted by `train` (Keras dtype policies; weights stay float32).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


@dataclass
class TrainConfig:
    """Every setting of a run; saved as ``config.json`` and read back by `resume`.

    ``cache`` is where decoded slices are kept between epochs and runs (see
    `segkit.data.SampleCache`); by default ``$SEGKIT_CACHE/data``, else ``~/.cache/segkit/data``.
    """

    model: str
    data: str
    layout: str = "auto"
    model_config: dict = field(default_factory=dict)
    loss: str = "dice"
    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 1e-4
    schedule: str = "constant"
    precision: str = "float32"
    image_size: tuple[int, int] = (256, 256)
    channels: int = 1
    normalize: str = "divide255"
    split: str = "auto"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    manifest: str | None = None
    augment: bool = True
    crop: int | None = None
    init_from: str | None = None
    patience: int = 10
    seed: int = 0
    cache: str | None = None
    workers: int = 2

    def preprocessing(self) -> data.Preprocessing:
        return data.Preprocessing(
            size=tuple(self.image_size), channels=self.channels, normalize=self.normalize
        )

    def check(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        for name in ("epochs", "batch_size", "patience", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}"
            )
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.crop is not None and not 0 < self.crop <= min(self.image_size):
            raise ValueError(
                f"crop must be between 1 and the image size {min(self.image_size)}, got {self.crop}"
            )


@dataclass
class RunState:
    """Where a run stands after its latest finished epoch."""

    epoch: int = 0
    best_dice: float = -1.0
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    history: list[dict] = field(default_factory=list)


def _default_cache() -> str:
    base = os.environ.get("SEGKIT_CACHE") or Path.home() / ".cache" / "segkit"
    return str(Path(base) / "data")


def train(
    model: str = "unet",
    data_dir: str | Path = ".",
    out: str | Path = "runs/unet",
    *,
    quiet: bool = False,
    callbacks: list | None = None,
    **settings,
) -> keras.Model:
    """Train ``model`` on the samples in ``data_dir``, writing the run to ``out``.

    Args:
        model: a registered model name (see ``segkit.models.list()``).
        data_dir: a data folder in any layout `segkit.data.find_samples` reads.
        out: the run folder; must not hold another run (use `resume` for that).
        quiet: no progress bars.
        callbacks: extra Keras callbacks (not saved with the run).
        **settings: any field of `TrainConfig`: ``loss``, ``epochs``, ``batch_size``,
            ``learning_rate``, ``schedule`` (``"constant"``, or ``"cosine"``: one epoch of
            warm-up, then cosine decay to zero at the last epoch), ``precision``
            (``"float32"``, or ``"mixed_bfloat16"``: about 1.8x faster training on CPUs with
            AVX-512 BF16, weights kept in float32), ``image_size``, ``split`` (``"auto"``,
            ``"blocks"``, ``"group"``, ``"random"``), ``manifest`` (a split file to reuse),
            ``augment``, ``patience``,
            ``crop`` (train on random square crops of this side, centred on the tumour 80% of
            the time: about (image_size / crop)**2 times cheaper per epoch), ``init_from`` (a
            run folder, ``.keras`` file or weights ``.npz`` the run starts from, for example
            to fine-tune a crop-trained model on whole slices), ``model_config``
            (builder arguments), ``seed``, ...

    Returns:
        The model with the best validation Dice's weights restored.

    Raises:
        FileExistsError: ``out`` already holds a run.
        ValueError: a setting is invalid.
    """
    config = TrainConfig(model=model, data=str(data_dir), **settings)
    config.check()
    run_dir = Path(out)
    if (run_dir / "config.json").exists():
        raise FileExistsError(
            f"{run_dir} already holds a run; resume it with `segkit train --resume {run_dir}` "
            "or choose another --out"
        )
    keras.utils.set_random_seed(config.seed)
    network = _build(config)  # a config the builder rejects fails before anything is read
    if config.init_from:
        _load_initial_weights(network, config.init_from)
    samples = data.find_samples(config.data, layout=config.layout)
    if config.manifest:
        split = data.Split.load(config.manifest)
    else:
        split = data.split_samples(
            samples, config.split, fractions=tuple(config.fractions), seed=config.seed
        )
    _check_split(config, samples, split)
    check_writable(run_dir)
    split.save(run_dir / "split.json")
    write_json(run_dir / "config.json", _config_record(config))
    return _fit(network, config, run_dir, samples, split, RunState(), quiet, callbacks)


def resume(
    run_dir: str | Path, *, quiet: bool = False, callbacks: list | None = None
) -> keras.Model:
    """Continue an interrupted run from its latest finished epoch.

    The optimizer state, epoch count, early-stopping state and data order are restored, so the
    result matches an uninterrupted run up to floating-point noise.

    Raises:
        FileNotFoundError: ``run_dir`` has no run, or no finished epoch to resume from.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{run_dir} holds no run (no config.json)")
    try:
        config = TrainConfig(**json.loads(config_path.read_text())["config"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{config_path} is not a segkit run config: {exc}") from None
    checkpoint = run_dir / "last.keras"
    samples = data.find_samples(config.data, layout=config.layout)
    split = data.Split.load(run_dir / "split.json")
    if not checkpoint.exists():  # interrupted during the first epoch: start it again
        keras.utils.set_random_seed(config.seed)
        return _fit(_build(config), config, run_dir, samples, split, RunState(), quiet, callbacks)
    state = read_state(checkpoint)
    network = keras.saving.load_model(checkpoint)
    return _fit(network, config, run_dir, samples, split, state, quiet, callbacks)


def read_state(checkpoint: str | Path) -> RunState:
    """The run state stored inside a ``last.keras`` checkpoint."""
    try:
        with zipfile.ZipFile(checkpoint) as archive:
            return RunState(**json.loads(archive.read(STATE_ENTRY)))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"{checkpoint} is not a segkit training checkpoint: {exc}") from None


def _config_record(config: TrainConfig) -> dict:
    return {
        "config": asdict(config),
        "segkit": segkit.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
    }


def _build(config: TrainConfig) -> keras.Model:
    # Crops train the same fully convolutional network; it must then accept any size.
    height, width = (None, None) if config.crop else config.image_size
    model_config = {"input_shape": (height, width, config.channels), **config.model_config}
    # Layers take the global dtype policy when they are created; restore it afterwards so
    # that models built later in the same process are unaffected.
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.precision)
    try:
        return segkit.models.get(config.model, **model_config)
    finally:
        keras.config.set_dtype_policy(previous)


def _load_initial_weights(network: keras.Model, source: str) -> None:
    """Start from a run folder (its ``last.keras``), a ``.keras`` file or a weights ``.npz``.

    The ``.npz`` is the float16 format of `segkit.weights.save_weights`: the format weights
    ship in, and about a seventh of a checkpoint's size (no optimizer state).
    """
    path = Path(source)
    if path.is_dir():
        path = path / "last.keras"
    if not path.is_file():
        raise FileNotFoundError(f"init_from: {path} does not exist")
    if path.suffix == ".npz":
        try:
            weights.load_weights(network, path)
        except ValueError as exc:  # does not fit, or not an .npz at all
            raise ValueError(f"init_from: {exc}") from None
        return
    trained = keras.saving.load_model(path, compile=False)
    shapes = [tuple(w.shape) for w in trained.weights]
    if shapes != [tuple(w.shape) for w in network.weights]:
        raise ValueError(
            f"init_from: the weights in {path} ({trained.name}, {len(shapes)} arrays) do not "
            f"fit {network.name} as configured"
        )
    network.set_weights(trained.get_weights())


def _compile(network: keras.Model, config: TrainConfig, steps_per_epoch: int) -> None:
    num_classes = network.output_shape[-1]
    mode = "binary" if num_classes == 1 else "multiclass"
    if config.schedule == "cosine":
        # One epoch of linear warm-up, then cosine decay to zero at the last epoch. The
        # schedule is saved with the optimizer, so a resumed run continues on it.
        warmup = steps_per_epoch if config.epochs > 1 else 0
        learning_rate = keras.optimizers.schedules.CosineDecay(
            0.0,
            decay_steps=max(1, steps_per_epoch * config.epochs - warmup),
            warmup_target=config.learning_rate,
            warmup_steps=warmup,
        )
    else:
        learning_rate = config.learning_rate
    network.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=LOSSES[config.loss](mode=mode),
        metrics=[metrics.Dice(), metrics.IoU()],
    )


def _fit(network, config, run_dir, samples, split, state: RunState, quiet, callbacks=None):
    if state.epoch >= config.epochs or state.epochs_without_improvement >= config.patience:
        return _restore_best(network, run_dir)
    train_samples, val_samples = _check_split(config, samples, split)
    prep = config.preprocessing()
    cache = config.cache or _default_cache()
    train_batches = data.SegmentationDataset(
        train_samples,
        prep,
        batch_size=config.batch_size,
        augment=data.Augment() if config.augment else None,
        crop=(config.crop, config.crop) if config.crop else None,
        seed=config.seed,
        cache=cache,
        workers=config.workers,
    )
    train_batches.set_epoch(state.epoch)
    val_batches = data.SegmentationDataset(
        val_samples, prep, batch_size=config.batch_size, shuffle=False, cache=cache
    )
    if not network.compiled:  # a new run; a resumed one brings its optimizer along
        _compile(network, config, len(train_batches))
    network.fit(
        train_batches,
        validation_data=val_batches,
        epochs=config.epochs,
        initial_epoch=state.epoch,
        callbacks=[RunRecorder(run_dir, state, config.patience, config.seed), *(callbacks or [])],
        verbose=0 if quiet else 1,
    )
    return _restore_best(network, run_dir)


def _check_split(config: TrainConfig, samples, split) -> tuple[list, list]:
    """The training and validation samples; both must be non-empty."""
    train_samples, val_samples, _ = split.select(samples)
    if not train_samples or not val_samples:
        raise ValueError(
            f"the split of {config.data} leaves {len(train_samples)} training and "
            f"{len(val_samples)} validation samples; both need at least one"
        )
    return train_samples, val_samples


def _restore_best(network, run_dir: Path) -> keras.Model:
    best = run_dir / "best.keras"
    if best.exists():
        network.set_weights(keras.saving.load_model(best, compile=False).get_weights())
    return network


class RunRecorder(keras.callbacks.Callback):
    """Writes checkpoints, log and curves at the end of each epoch, and stops early.

    Early stopping watches the validation Dice: training stops after ``patience`` epochs
    without a better one, and `train` returns the best epoch's weights.
    """

    def __init__(self, run_dir: Path, state: RunState, patience: int, seed: int):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.state = state
        self.patience = patience
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        # Reseed per epoch so that a resumed run draws the same dropout masks as an
        # uninterrupted one would.
        keras.utils.set_random_seed(self.seed + 1000 * (epoch + 1))
        self.epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        logs["seconds"] = round(time.perf_counter() - self.epoch_start, 1)
        if MONITOR not in logs:
            raise KeyError(f"training logs lack {MONITOR!r}; got {sorted(logs)}")
        state = self.state
        improved = logs[MONITOR] > state.best_dice
        state.epoch = epoch + 1
        state.history.append({"epoch": epoch + 1, **logs})
        if improved:
            state.best_dice, state.best_epoch = logs[MONITOR], epoch + 1
            state.epochs_without_improvement = 0
        else:
            state.epochs_without_improvement += 1

        last = self.run_dir / "last.keras"
        with atomic_path(last) as tmp:
            self.model.save(tmp)
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(STATE_ENTRY, json.dumps(asdict(state)))
        if improved:
            with atomic_path(self.run_dir / "best.keras") as tmp:
                shutil.copyfile(last, tmp)
        write_log(self.run_dir, state.history)
        if state.epochs_without_improvement >= self.patience:
            self.model.stop_training = True


def write_log(run_dir: Path, history: list[dict]) -> None:
    """Rewrite ``log.csv`` and ``curves.png`` from the run's history."""
    if not history:
        return
    columns = list(history[0])
    with atomic_path(run_dir / "log.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
    plot_curves(history, run_dir / "curves.png")


def plot_curves(history: list[dict], path: Path) -> None:
    """Loss and Dice per epoch, training beside validation."""
    # A bare Figure draws without pyplot, leaving the user's plotting backend alone.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = np.array([row["epoch"] for row in history])
    figure = Figure(figsize=(9, 3.5), constrained_layout=True)
    axes = figure.subplots(1, 2)
    for axis, metric in zip(axes, ("loss", "dice")):
        for prefix, style in (("", "-"), ("val_", "--")):
            key = prefix + metric
            if key in history[0]:
                axis.plot(epochs, [row[key] for row in history], style, marker="o", label=key)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100)
