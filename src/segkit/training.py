"""Training a registered model on a data folder, with checkpoints a crash cannot corrupt.

What a run writes, and how it is read back, is `segkit.runs`: the run folder's files, its
settings (`TrainConfig`) and its state (`RunState`). This module fits the model.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import keras

import segkit
from segkit import data, distribute, losses, metrics
from segkit.backend import check_precision
from segkit.data.intensity import IntensityRange
from segkit.data.selection import select_slices
from segkit.data.volumes import PERCENTILES
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
    "ValidationWeights",
    "read_state",
    "recompute_batch_norm",
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
            loss_args={"alpha": 0.3}``; ``loss_args={"per_image": True}`` averages Dice over
            images, as the model cards report it), ``epochs``, ``batch_size``,
            ``learning_rate``, ``schedule`` (``"constant"``, or ``"cosine"``: warm-up, then
            cosine decay to zero at the last epoch), ``warmup_epochs`` (of linear warm-up
            from zero: by default 1 for cosine, 0 for constant), ``clipnorm`` (clip the
            gradients to this global norm), ``ema`` (a decay such as 0.99: validate, stop
            early on and keep an exponential moving average of the weights), ``precise_bn``
            (recompute batch-norm statistics on this many unaugmented training batches before
            each validation), ``precision``
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
    # Paths stored resolved, so that the run resumes (and is read) from any folder.
    for name in ("manifest", "init_from", "cache"):
        if settings.get(name) and Path(settings[name]).exists():
            settings[name] = str(Path(settings[name]).resolve())
    data_dir = Path(data_dir).resolve() if Path(data_dir).exists() else data_dir
    config = TrainConfig(model=model, data=str(data_dir), **settings)
    config.check()
    check_precision(config.precision)
    placement = _place(config)
    _check_placement(config, placement)
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
    if not split.test:
        summary = _split_summary(split, samples)
        warnings.warn(
            f"the split of {config.data} holds out nothing for testing ({summary}: "
            f"{len(split.train)} training, {len(split.val)} validation, 0 test), so "
            "`segkit evaluate --subset test` will have nothing to score: evaluate on other "
            "data, or split with more samples",
            UserWarning,
            stacklevel=2,
        )
    if placement.is_chief:  # the only writer of the run folder
        run.create(
            config,
            split,
            _intensity_range(train_samples, config),
            placement.describe(),
            _volume_mapping(samples),
        )
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
    _check_placement(config, placement)
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


def _check_placement(config: TrainConfig, placement: distribute.Placement) -> None:
    if placement.process_count > 1 and (config.ema is not None or config.precise_bn):
        # Both set weights between steps, which on several hosts all must do together.
        raise ValueError("ema and precise_bn train on one host; run without several processes")


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
    channels = config.preprocessing().n_channels  # config.channels may name several, e.g. (0, 1)
    model_config = {"input_shape": (height, width, channels), **config.model_config}
    if config.encoder:
        model_config.setdefault("encoder", config.encoder)
        if config.encoder_weights not in (None, "none"):
            model_config.setdefault("encoder_weights", config.encoder_weights)
    if config.class_names:  # one softmax channel per class, or a sigmoid per region
        model_config.setdefault("num_classes", config.output_channels())
        if config.regions:
            model_config.setdefault("multilabel", True)
    # Layers take the global dtype policy when they are created; restore it afterwards so
    # that models built later in the same process are unaffected.
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.precision)
    try:
        network = segkit.models.get(config.model, **model_config)
    finally:
        keras.config.set_dtype_policy(previous)
    expects = getattr(network, "segkit_normalize", None)
    if expects and expects != config.normalize:
        raise ValueError(
            f"normalize: encoder {config.encoder!r} takes images scaled as {expects!r} (its "
            f"own scaling is inside the model), not {config.normalize!r}"
        )
    return network


def _loss(config: TrainConfig, network: keras.Model) -> keras.losses.Loss:
    regions = config.region_set()
    if regions:  # the label maps become one target per region in the loss
        return losses.get(
            config.loss, mode="multilabel", regions=regions.labels, **config.loss_args
        )
    mode = "binary" if network.output_shape[-1] == 1 else "multiclass"
    return losses.get(config.loss, mode=mode, **config.loss_args)


def _metrics(config: TrainConfig) -> list[keras.metrics.Metric]:
    # A Dice per class (or region) and their mean, "dice", which early stopping watches; a
    # multi-class run leaves out the background, which covers most pixels.
    regions = config.region_set()
    names = regions.names if regions else config.class_names
    labels = regions.labels if regions else None
    ignore_index = config.loss_args.get("ignore_index")
    return metrics.for_task(config.task_mode(), names, labels, ignore_index)


def _load_initial_weights(network: keras.Model, source: str) -> None:
    """Start from a run folder (its ``last.keras``), a ``.keras`` file or a weights ``.npz``.

    The ``.npz`` is the format weights ship in (`segkit.models.pretrained.save_weights`),
    about a seventh of a checkpoint's size (no optimizer state). A run folder of a run with
    ``ema`` gives the moving average its optimizer kept, the weights that run validated.
    """
    path = Path(source)
    averaged = False
    if path.is_dir():
        run = RunFolder(path)
        averaged = run.holds_run() and run.config().ema is not None
        path = run.last_checkpoint
    if not path.is_file():
        raise FileNotFoundError(f"init_from: {path} does not exist")
    if path.suffix == ".npz":
        try:
            pretrained.load_weights(network, path)
        except ValueError as exc:  # does not fit, or not an .npz at all
            raise ValueError(f"init_from: {exc}") from None
        return
    try:
        trained = load_keras(path, compile=averaged)  # the average is optimizer state
    except ValueError as exc:
        raise ValueError(f"init_from: {exc}") from None
    if averaged:
        _swap_in_average(trained)
    shapes = [tuple(w.shape) for w in trained.weights]
    if shapes != [tuple(w.shape) for w in network.weights]:
        raise ValueError(
            f"init_from: the weights in {path} ({trained.name}, {len(shapes)} arrays) do not "
            f"fit {network.name} as configured"
        )
    network.set_weights(trained.get_weights())


def _learning_rate(config: TrainConfig, steps_per_epoch: int):
    """The configured rate, or a schedule: linear warm-up from zero, then (cosine) decay to zero
    at the last epoch or (constant) none. It is saved with the optimizer, so a resumed run
    continues on it."""
    warmup_epochs = config.warmup_epochs
    if warmup_epochs is None:  # runs from before the setting had these
        warmup_epochs = 1 if config.schedule == "cosine" and config.epochs > 1 else 0
    warmup = steps_per_epoch * warmup_epochs
    if config.schedule == "constant" and not warmup:
        return config.learning_rate
    return keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=max(1, steps_per_epoch * config.epochs - warmup),
        alpha=1.0 if config.schedule == "constant" else 0.0,  # 1: stay at the target rate
        warmup_target=config.learning_rate,
        warmup_steps=warmup,
    )


def _optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    # With ema the optimizer keeps the average beside the weights it trains, which go on
    # undisturbed: `ValidationWeights` swaps the average in to validate, and `RunRecorder`
    # writes it to best.keras. (ema_overwrite_frequency would copy it over the trained weights
    # every so many steps instead: a change to the optimisation itself, not an average of it.)
    averaging = {"use_ema": True, "ema_momentum": config.ema} if config.ema is not None else {}
    return keras.optimizers.Adam(
        _learning_rate(config, steps_per_epoch), global_clipnorm=config.clipnorm, **averaging
    )


def _compile(network: keras.Model, config: TrainConfig, steps_per_epoch: int) -> None:
    network.compile(
        optimizer=_optimizer(config, steps_per_epoch),
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
    own_callbacks = [recorder]
    bn_batches = None
    if config.precise_bn and not _batch_norm_layers(network):
        warnings.warn(
            f"precise_bn: {config.model} as configured has no batch normalisation; "
            "there are no statistics to recompute",
            stacklevel=2,
        )
    elif config.precise_bn:
        # Unaugmented whole slices, in one shuffled order: the first batches mix tumour types.
        bn_batches = data.SegmentationDataset(
            train_samples, prep, batch_size=config.batch_size, seed=config.seed, cache=cache
        )
    if config.ema is not None or bn_batches is not None:
        own_callbacks.insert(0, ValidationWeights(bn_batches, config.precise_bn))
    distribute.check_loss(placement, _loss(config, network), network.output_shape)
    with placement.scope():
        if not network.compiled:  # a new run; a resumed one brings its optimizer along
            _compile(network, config, len(train_batches))
        network.fit(
            train_batches,
            validation_data=val_batches,
            epochs=config.epochs,
            initial_epoch=state.epoch,
            callbacks=[*own_callbacks, *(callbacks or [])],
            verbose=0 if quiet else 1,
        )
    if placement.process_count > 1:
        # Loading weights into a model spread over hosts is a step all must take together,
        # and only the chief knows when best.keras is written: keep the last epoch's weights.
        return network
    return _restore_best(network, run)


def _volume_mapping(samples) -> dict | None:
    """What predict on volumes must repeat: the 8-bit mapping of volume slices, if any."""
    if not any(sample.slice is not None for sample in samples):
        return None
    return {
        "mapping": "each modality's percentile window of its volume to 0..255",
        "percentiles": list(PERCENTILES),
    }


def _check_split(config: TrainConfig, samples, split) -> tuple[list, list]:
    """The training samples (the first ``limit`` of them) and the validation samples; both
    must be non-empty."""
    train_samples, val_samples, _ = split.select(samples)
    # Only training slices are chosen: validation scores every slice, as evaluation does.
    train_samples = select_slices(train_samples, config.slices, seed=config.seed)
    train_samples = train_samples[: config.limit]
    if not train_samples or not val_samples:
        advice = (
            "give a --manifest whose split has both (segkit.data.split_samples with a "
            "smaller block_size writes one)"
        )
        if split.method != "random" and not config.manifest:
            advice = f"use --split random (slice by slice), or {advice}"
        raise ValueError(
            f"the split of {config.data} leaves {len(train_samples)} training and "
            f"{len(val_samples)} validation samples, and both need at least one: "
            f"{_split_summary(split, samples)}; {advice}"
        )
    return train_samples, val_samples


def _split_summary(split, samples) -> str:
    """What a split kept together and how many units it had to share out, for messages:
    ``"'blocks' split, blocks of 20 consecutive slices of a label: 2 blocks"``."""
    if split.method == "blocks" and split.block_size:
        per_label = Counter(sample.label for sample in samples)
        blocks = sum(-(-count // split.block_size) for count in per_label.values())
        return (
            f"'blocks' split, blocks of {split.block_size} consecutive slices of a label: "
            f"{blocks} block{'s' if blocks != 1 else ''}"
        )
    if split.method == "group":
        groups = len({sample.patient for sample in samples})
        return f"'group' split, each patient on one side: {groups} patients"
    return f"'{split.method}' split"


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
            best_weights = None
            if improved and _averages_weights(self.model):  # keep the weights validated
                trained = _swap_in_average(self.model)
                best_weights = self.model.get_weights()
                _restore(self.model, trained)
            self.run.save_epoch(self.model, state, improved, best_weights)
        else:
            # Saving gathers the weights of all hosts, a step every process must take
            # together; only the chief keeps the file.
            with tempfile.TemporaryDirectory() as scratch:
                self.model.save(Path(scratch) / "replica.keras")
        if state.epochs_without_improvement >= self.patience:
            self.model.stop_training = True


class ValidationWeights(keras.callbacks.Callback):
    """Validates the weights a run keeps rather than the ones it is stepping.

    With ``ema`` the optimizer's moving average of the weights is swapped in for validation
    and the trained weights back afterwards, so validation, early stopping and best.keras all
    see the average. With ``precise_bn`` batch-norm statistics are then recomputed
    (`recompute_batch_norm`) on the first ``precise_bn`` batches of ``batches``, for the
    weights about to be validated. They stay in the model, and so in the checkpoints;
    training moves them on from there.

    Args:
        batches: unaugmented training batches ``(images, masks)``; None: no precise batch norm.
        precise_bn: how many of them to recompute batch-norm statistics on.
    """

    def __init__(self, batches=None, precise_bn: int = 0):
        super().__init__()
        self.batches = batches
        self.precise_bn = precise_bn
        self.trained = None  # the trained weights while the average is swapped in

    def on_test_begin(self, logs=None):
        if _averages_weights(self.model):
            self.trained = _swap_in_average(self.model)
        if self.batches is not None:
            count = min(self.precise_bn, len(self.batches))
            recompute_batch_norm(self.model, (self.batches[i][0] for i in range(count)))

    def on_test_end(self, logs=None):
        if self.trained is not None:
            _restore(self.model, self.trained)
            self.trained = None


def recompute_batch_norm(model: keras.Model, images: Iterable) -> int:
    """Set every batch-norm layer's moving mean and variance to the mean of its batch
    statistics over ``images`` ("precise batch norm").

    Training keeps these statistics as running averages that trail the weights, far behind
    while the learning rate is high; inference uses them. Each batch runs through the model
    in training mode, so each layer sees its inputs as in training (Wu and Johnson,
    "Rethinking 'Batch' in BatchNorm", 2021).

    Args:
        model: the model; only its batch-norm statistics change.
        images: batches of images ``(B, H, W, C)``, e.g. unaugmented training batches.

    Returns:
        How many layers were recomputed: 0 for a model without batch norm.
    """
    layers = _batch_norm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    try:
        for count, batch in enumerate(images):
            # A layer's new moving value is momentum * moving + (1 - momentum) * batch value:
            # a momentum of n / (n + 1) on the (n + 1)-th batch keeps the plain mean of all.
            for layer in layers:
                layer.momentum = count / (count + 1)
            model(batch, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return len(layers)


def _batch_norm_layers(model) -> list:
    """The trainable batch-norm layers of ``model`` and of the models nested in it."""
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.BatchNormalization):
            if layer.trainable:  # a frozen one keeps its statistics in training mode too
                found.append(layer)
        else:
            found += _batch_norm_layers(layer)
    return found


def _averages_weights(model: keras.Model) -> bool:
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # mixed float16 wraps it
    return bool(getattr(optimizer, "use_ema", False))


def _swap_in_average(model: keras.Model) -> list:
    """Put the optimizer's moving average into the trainable weights; returns the trained
    weights, for `_restore`."""
    trained = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    model.optimizer.finalize_variable_values(model.trainable_variables)
    for variable in model.trainable_variables:
        # On JAX each weight now shares its array with the average, and evaluation frees the
        # weights' arrays (donates them to the next step): the average would go with them.
        variable.assign(keras.ops.copy(variable))
    return trained


def _restore(model: keras.Model, trained: list) -> None:
    for variable, value in zip(model.trainable_variables, trained):
        variable.assign(value)
