"""Training a registered model on a data folder, with checkpoints a crash cannot corrupt.

What a run writes, and how it is read back, is `segkit.runs`: the run folder's files, its
settings (`TrainConfig`) and its state (`RunState`). This module fits the model.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import keras

import segkit
from segkit import data, distribute, losses, metrics
from segkit.backend import check_precision
from segkit.data.intensity import IntensityRange
from segkit.models import pretrained
from segkit.runs import (
    PLACEMENT_FIELDS,
    PRECISIONS,
    SCHEDULES,
    RunFolder,
    RunState,
    TrainConfig,
    default_cache,
    load_keras,
    read_state,
)

MONITOR = "val_dice"
INTENSITY_SAMPLES = 500  # enough for the 0.5th and 99.5th percentiles to settle

__all__ = [
    "PRECISIONS",
    "SCHEDULES",
    "RunRecorder",
    "RunState",
    "TrainConfig",
    "read_state",
    "resume",
    "train",
]


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
        **settings: any field of `TrainConfig`: ``loss`` and ``loss_args`` (a loss name of
            `segkit.losses.list()` and its arguments, e.g. ``loss="tversky",
            loss_args={"alpha": 0.3}``), ``epochs``, ``batch_size``,
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
    check_precision(config.precision)
    placement = _place(config)
    run = RunFolder(out)
    # A folder whose run never finished an epoch holds nothing to resume: start it afresh, so
    # that a run stopped by bad data runs again once the data is fixed.
    if run.finished_an_epoch():
        raise FileExistsError(
            f"{run} already holds a run; resume it with `segkit train --resume {run}` "
            "or choose another --out"
        )
    keras.utils.set_random_seed(config.seed)
    with placement.scope():  # variables are created where the replicas need them
        network = _build(config)  # a config the builder rejects fails before anything is read
    _loss(config, network)  # and so do loss arguments the loss does not take
    if config.init_from:
        _load_initial_weights(network, config.init_from)
    samples = data.find_samples(config.data, layout=config.layout, on_problem=config.on_problem)
    if config.manifest:
        split = data.Split.load(config.manifest)
    else:
        split = data.split_samples(
            samples, config.split, fractions=tuple(config.fractions), seed=config.seed
        )
    train_samples, val_samples = _check_split(config, samples, split)
    if not quiet:
        print(
            f"{len(samples)} samples in {config.data}: training on {len(train_samples)}, "
            f"validating on {len(val_samples)}, {len(split.test)} held out for testing",
            flush=True,
        )
    if placement.is_chief:  # the only writer of the run folder
        run.create(config, split, _intensity_range(train_samples, config), placement.describe())
    return _fit(network, config, run, samples, split, RunState(), quiet, callbacks, placement)


def resume(
    run_dir: str | Path,
    *,
    epochs: int | None = None,
    quiet: bool = False,
    callbacks: list | None = None,
    **placement_settings,
) -> keras.Model:
    """Continue an interrupted run from its latest finished epoch.

    The optimizer state, epoch count, early-stopping state and data order are restored; see
    the Training guide for how close the result comes to an uninterrupted run.

    Args:
        run_dir: the run folder.
        epochs: train up to this many epochs in all, more than the run was started with
            (constant learning rate only: a cosine schedule was laid out for the original
            count). None keeps the run's own.
        quiet: no progress bars.
        callbacks: extra Keras callbacks.
        **placement_settings: ``devices``, ``coordinator``, ``num_processes`` or
            ``process_id`` (see `TrainConfig`) to resume on other devices or hosts than the
            run's own.

    Raises:
        FileNotFoundError: ``run_dir`` has no run.
        ValueError: its config or checkpoint is unreadable, or ``epochs`` cannot be reached.
    """
    run = RunFolder(run_dir)
    config = run.config()
    unknown = set(placement_settings) - set(PLACEMENT_FIELDS)
    if unknown:
        raise ValueError(f"resume takes {', '.join(PLACEMENT_FIELDS)}, not {', '.join(unknown)}")
    for name, value in placement_settings.items():
        setattr(config, name, value)
    config.check()
    placement = _place(config)
    if placement.is_chief:
        run.remove_partial_files()
    check_precision(config.precision)
    if epochs is not None and epochs != config.epochs:
        if placement.is_chief:
            _extend(run, config, epochs)
        else:
            config.epochs = epochs
    samples = data.find_samples(config.data, layout=config.layout, on_problem=config.on_problem)
    split = run.split()
    state = run.state()
    with placement.scope():
        if state.epoch == 0:  # interrupted during the first epoch: start it again
            keras.utils.set_random_seed(config.seed)
            network = _build(config)
        else:
            network = run.load_last()
    return _fit(network, config, run, samples, split, state, quiet, callbacks, placement)


def _place(config: TrainConfig) -> distribute.Placement:
    return distribute.place(
        config.devices, config.coordinator, config.num_processes, config.process_id
    )


def _intensity_range(samples, config: TrainConfig) -> IntensityRange:
    """How bright the training images are, so that inputs unlike them can be noticed later.

    Up to `INTENSITY_SAMPLES` evenly spaced training images, decoded through the run's cache
    (which the first epoch then finds filled).
    """
    step = max(1, len(samples) // INTENSITY_SAMPLES)
    decode = data.loading.decoder(config.preprocessing(), config.cache or default_cache())
    return IntensityRange.measure(decode(s)[0] for s in samples[::step])


def _extend(run: RunFolder, config: TrainConfig, epochs: int) -> None:
    done = run.state().epoch
    if epochs < max(done, 1):
        raise ValueError(f"epochs: {run} has already run {done} epochs; ask for more than that")
    if config.schedule != "constant":
        raise ValueError(
            f"epochs: {run} uses the {config.schedule} schedule, laid out for {config.epochs} "
            f"epochs; to train on, start a new run with --init-from {run}"
        )
    config.epochs = epochs
    run.write_config(config)


def _build(config: TrainConfig) -> keras.Model:
    # Crops train the same fully convolutional network; it must then accept any size.
    height, width = (None, None) if config.crop else config.image_size
    model_config = {"input_shape": (height, width, config.channels), **config.model_config}
    if config.class_names:  # one softmax channel per class
        model_config.setdefault("num_classes", config.output_channels())
    # Layers take the global dtype policy when they are created; restore it afterwards so
    # that models built later in the same process are unaffected.
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.precision)
    try:
        return segkit.models.get(config.model, **model_config)
    finally:
        keras.config.set_dtype_policy(previous)


def _loss(config: TrainConfig, network: keras.Model) -> keras.losses.Loss:
    mode = "binary" if network.output_shape[-1] == 1 else "multiclass"
    return losses.get(config.loss, mode=mode, **config.loss_args)


def _metrics(config: TrainConfig) -> list[keras.metrics.Metric]:
    # A multi-class run is scored on its foreground classes: background covers most pixels.
    background = not config.class_names
    return [metrics.Dice(include_background=background), metrics.IoU(include_background=background)]


def _load_initial_weights(network: keras.Model, source: str) -> None:
    """Start from a run folder (its ``last.keras``), a ``.keras`` file or a weights ``.npz``.

    The ``.npz`` is the format weights ship in (`segkit.models.pretrained.save_weights`),
    about a seventh of a checkpoint's size (no optimizer state).
    """
    path = Path(source)
    if path.is_dir():
        path = RunFolder(path).last_checkpoint
    if not path.is_file():
        raise FileNotFoundError(f"init_from: {path} does not exist")
    if path.suffix == ".npz":
        try:
            pretrained.load_weights(network, path)
        except ValueError as exc:  # does not fit, or not an .npz at all
            raise ValueError(f"init_from: {exc}") from None
        return
    try:
        trained = load_keras(path)
    except ValueError as exc:
        raise ValueError(f"init_from: {exc}") from None
    shapes = [tuple(w.shape) for w in trained.weights]
    if shapes != [tuple(w.shape) for w in network.weights]:
        raise ValueError(
            f"init_from: the weights in {path} ({trained.name}, {len(shapes)} arrays) do not "
            f"fit {network.name} as configured"
        )
    network.set_weights(trained.get_weights())


def _compile(network: keras.Model, config: TrainConfig, steps_per_epoch: int) -> None:
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
        loss=_loss(config, network),
        metrics=_metrics(config),
    )


def _fit(
    network,
    config,
    run: RunFolder,
    samples,
    split,
    state: RunState,
    quiet,
    callbacks=None,
    placement: distribute.Placement | None = None,
):
    placement = placement or distribute.Placement(keras.backend.backend())
    # batch_size is the global batch; each process reads only its share of it.
    share = {
        "replicas": placement.replicas,
        "process": (placement.process_index, placement.process_count),
    }
    if state.epoch >= config.epochs or state.epochs_without_improvement >= config.patience:
        return _restore_best(network, run)
    train_samples, val_samples = _check_split(config, samples, split)
    prep = config.preprocessing()
    cache = config.cache or default_cache()
    train_batches = data.SegmentationDataset(
        train_samples,
        prep,
        batch_size=config.batch_size,
        augment=data.Augment() if config.augment else None,
        crop=(config.crop, config.crop) if config.crop else None,
        seed=config.seed,
        cache=cache,
        workers=config.workers,
        **share,
    )
    train_batches.set_epoch(state.epoch)
    val_batches = data.SegmentationDataset(
        val_samples, prep, batch_size=config.batch_size, shuffle=False, cache=cache, **share
    )
    recorder = RunRecorder(run, state, config.patience, config.seed, write=placement.is_chief)
    distribute.check_loss(placement, _loss(config, network), network.output_shape)
    with placement.scope():
        if not network.compiled:  # a new run; a resumed one brings its optimizer along
            _compile(network, config, len(train_batches))
        network.fit(
            train_batches,
            validation_data=val_batches,
            epochs=config.epochs,
            initial_epoch=state.epoch,
            callbacks=[recorder, *(callbacks or [])],
            verbose=0 if quiet else 1,
        )
    if placement.process_count > 1:
        # Loading weights into a model spread over hosts is a step all must take together,
        # and only the chief knows when best.keras is written: keep the last epoch's weights.
        return network
    return _restore_best(network, run)


def _check_split(config: TrainConfig, samples, split) -> tuple[list, list]:
    """The training samples (the first ``limit`` of them) and the validation samples; both
    must be non-empty."""
    train_samples, val_samples, _ = split.select(samples)
    train_samples = train_samples[: config.limit]
    if not train_samples or not val_samples:
        raise ValueError(
            f"the split of {config.data} leaves {len(train_samples)} training and "
            f"{len(val_samples)} validation samples; both need at least one"
        )
    return train_samples, val_samples


def _restore_best(network, run: RunFolder) -> keras.Model:
    if run.best_checkpoint.exists():
        network.set_weights(run.load_best().get_weights())
    return network


class RunRecorder(keras.callbacks.Callback):
    """Commits each finished epoch to the run folder, and stops early.

    Early stopping watches the validation Dice: training stops after ``patience`` epochs
    without a better one, and `train` returns the best epoch's weights.
    """

    def __init__(
        self,
        run: RunFolder | str | Path,
        state: RunState,
        patience: int,
        seed: int,
        write: bool = True,  # False on every process but the chief of a distributed run
    ):
        super().__init__()
        self.write = write
        self.run = run if isinstance(run, RunFolder) else RunFolder(run)
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
        if self.write:
            self.run.save_epoch(self.model, state, improved)
        else:
            # Saving gathers the weights of all hosts, a step every process must take
            # together; only the chief keeps the file.
            with tempfile.TemporaryDirectory() as scratch:
                self.model.save(Path(scratch) / "replica.keras")
        if state.epochs_without_improvement >= self.patience:
            self.model.stop_training = True
