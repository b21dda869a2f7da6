"""A training run's settings and its folder: the one reader and writer of what `segkit.train`
leaves on disk.

============== ==========================================================================
``config.json`` every setting of the run (a `TrainConfig`) and the versions that ran it
``split.json``  the split manifest: which samples were train, validation and test
``last.keras``  model, optimizer state and run state after the latest finished epoch
``best.keras``  the model at the best validation Dice so far
``log.csv``     one row of losses, metrics and wall-clock seconds per epoch
``curves.png``  the training curves
============== ==========================================================================

``last.keras`` is the single commit point: it is replaced in one step at the end of each
epoch and carries the epoch count, early-stopping state and history inside it, so a resumed
run continues exactly where the last finished epoch left off. The other files are rewritten
from it.

`TrainConfig` is also the one source of the training options: `segkit train`'s options
(names, defaults, choices and help) are generated from its fields.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from segkit._io import atomic_path, check_writable, write_json
from segkit.data import LAYOUTS, Preprocessing, Split
from segkit.data.classes import TUMOUR_TYPE, Classes, Regions, parse_regions, resolve_classes
from segkit.data.intensity import IntensityRange
from segkit.data.preprocess import NORMALIZATIONS
from segkit.data.selection import parse_slices
from segkit.visualize import plot_curves

#: Learning-rate schedules a run accepts.
SCHEDULES = ("constant", "cosine")

#: Compute precisions a run accepts (Keras dtype policies; weights stay float32).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")

#: Split methods a run accepts (see `segkit.data.split_samples`).
SPLITS = ("auto", "blocks", "group", "random")

#: How a model's output channels are read (as segmentation_models_pytorch names them).
MODES = ("auto", "binary", "multiclass", "multilabel")

#: Settings that say where a run trains, not what it learns: a resumed run may change them.
PLACEMENT_FIELDS = ("devices", "coordinator", "num_processes", "process_id")

STATE_ENTRY = "segkit_state.json"  # extra member of last.keras holding the run state


def _option(default, help: str, **cli):  # noqa: A002  (click's own word for it)
    """A `TrainConfig` field with the help text (and CLI details) its command-line option shows.

    ``cli`` may hold ``flag`` (the option's name when it is not the field's), ``choices``,
    ``hidden=True`` for a field the command line does not offer, and ``metavar``.
    """
    metadata = {"help": help, **cli}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Every setting of a run; saved as ``config.json`` and read back to resume it.

    ``cache`` is where decoded slices are kept between epochs and runs (see
    `segkit.data.SampleCache`); by default ``$SEGKIT_CACHE/data``, else ``~/.cache/segkit/data``.
    """

    model: str = _option("unet", "Registered model name.")
    data: str = _option("", "Data folder (any supported layout).", metavar="DIR")
    layout: str = _option("auto", "Data layout.", choices=("auto", *LAYOUTS))
    on_problem: str = _option(
        "error",
        "What to do with images without a mask and other problems in the data: stop (error) "
        "or leave those files out (skip).",
        choices=("error", "skip"),
    )
    model_config: dict = _option(
        {},
        "Builder argument, e.g. base_filters=16 (repeatable; values parsed as JSON).",
        metavar="KEY=VALUE",
    )
    encoder: str | None = _option(
        None,
        "Encoder under the model's decoder (see `segkit encoders`), e.g. resnet50; none: the "
        "model's own.",
    )
    encoder_weights: str | None = _option(
        None,
        "What the encoder starts from: imagenet (downloaded; needs network), none, or the path "
        "of a local weights file.",
        metavar="imagenet|none|PATH",
    )
    loss: str = _option("dice", "Loss name (see `segkit.losses.list()`): dice, bce_dice, ...")
    loss_args: dict = _option(
        {},
        "Loss argument, e.g. alpha=0.3 for tversky (repeatable; values parsed as JSON).",
        flag="--loss-arg",
        metavar="KEY=VALUE",
    )
    num_classes: int | None = _option(
        None,
        "Classes of label-map masks, background included (a classes.json beside images/ and "
        "masks/ says so too); none: binary 0/255 masks.",
    )
    classes: str | None = _option(
        None,
        "tumour-type: four classes, background and the slice's tumour type, from labels.csv "
        "or the .mat label field.",
        metavar="tumour-type",
    )
    mode: str = _option(
        "auto",
        "binary: one sigmoid channel; multiclass: a softmax channel per class, one class a "
        "pixel; multilabel: a sigmoid channel per region (--regions); auto: binary for binary "
        "masks, multiclass for label maps, multilabel with regions.",
        choices=MODES,
    )
    regions: str | None = _option(
        None,
        "Train overlapping regions of the label maps, one sigmoid channel each (nnU-Net's "
        'regions; mode multilabel): ";" between regions, "," between labels, names optional, '
        'e.g. "whole=1,2,3;core=1,3;enhancing=3".',
        metavar="REGIONS",
    )
    class_names: list = _option([], "", hidden=True)  # recorded when the run starts
    epochs: int = _option(50, "Epochs at most.")
    batch_size: int = _option(32, "Images per training step.")
    learning_rate: float = _option(1e-4, "Peak learning rate of Adam.", flag="--lr")
    schedule: str = _option(
        "constant",
        "cosine: warm-up, then decay to zero at the last epoch.",
        choices=SCHEDULES,
    )
    warmup_epochs: int | None = _option(
        None,
        "Epochs of linear learning-rate warm-up from zero (default: 1 with the cosine schedule "
        "when there are two epochs or more, 0 with the constant one).",
    )
    clipnorm: float | None = _option(
        None, "Clip the gradients to this global norm (none: no clipping).", metavar="NORM"
    )
    ema: float | None = _option(
        None,
        "Keep an exponential moving average of the weights with this decay, e.g. 0.99: "
        "validation, early stopping, best.keras and the result use it.",
        metavar="DECAY",
    )
    precise_bn: int = _option(
        0,
        "Before each validation, recompute batch-norm statistics on this many unaugmented "
        "training batches (0: no).",
        metavar="N",
    )
    precision: str = _option(
        "float32", "Compute precision; mixed keeps float32 weights.", choices=PRECISIONS
    )
    image_size: tuple[int, int] = _option((256, 256), "Square input side.")
    channels: int | tuple = _option(
        1,
        "Image channels: 1 (grey; FLAIR for LGG), 3 (RGB; all three LGG sequences) or names "
        "or indices, e.g. flair,post-contrast.",
        metavar="CHANNELS",
    )
    normalize: str = _option(
        "divide255", "Intensity scaling of each image.", choices=NORMALIZATIONS
    )
    split: str = _option("auto", "How to split the data.", choices=SPLITS)
    fractions: tuple[float, float, float] = _option((0.8, 0.1, 0.1), "", hidden=True)
    manifest: str | None = _option(None, "Reuse this split manifest.", metavar="FILE")
    limit: int | None = _option(
        None, "Train on only the first N training samples of the split (a quick try)."
    )
    slices: str = _option(
        "all",
        "Which training slices to use: all; foreground, those whose mask holds foreground; "
        "or foreground+SHARE, those and a random share of the rest (e.g. foreground+0.1). "
        "Validation keeps every slice.",
        metavar="all|foreground|foreground+SHARE",
    )
    augment: bool = _option(True, "Random flips, rotations and intensity changes.")
    crop: int | None = _option(None, "Train on random square crops of this side.")
    init_from: str | None = _option(
        None,
        "Start from the weights of this run folder, .keras file or weights .npz (fine-tuning).",
        metavar="PATH",
    )
    patience: int = _option(10, "Early stopping: epochs without a better validation Dice.")
    seed: int = _option(0, "Random seed of the split, the weights and the data order.")
    cache: str | None = _option(
        None,
        "Folder for decoded slices (default: $SEGKIT_CACHE/data or ~/.cache/segkit/data).",
        metavar="DIR",
    )
    workers: int = _option(2, "Threads that decode training images.")
    devices: int | str = _option(
        1,
        "Local devices to train on in parallel: a count, or all (jax, tensorflow); "
        "--batch-size is then the global batch.",
        metavar="all|N",
    )
    coordinator: str | None = _option(
        None, "HOST:PORT of process 0 when several hosts train together (jax).", metavar="ADDR"
    )
    num_processes: int | None = _option(None, "Processes (one per host) training together.")
    process_id: int | None = _option(None, "This process's number; 0 writes the run folder.")

    def preprocessing(self) -> Preprocessing:
        return Preprocessing.for_classes(
            self.data_classes(),
            size=tuple(self.image_size),
            channels=self.channels,
            normalize=self.normalize,
            # Unlabelled pixels the loss leaves out must get through the mask reader too.
            ignore_index=self.loss_args.get("ignore_index"),
        )

    def data_classes(self) -> Classes | None:
        """The classes the run learns (None: binary), from `class_names` once recorded."""
        if not self.class_names:
            return None
        source = "sample-label" if self.classes == TUMOUR_TYPE else "mask"
        return Classes(tuple(self.class_names), source)

    def region_set(self) -> Regions | None:
        """The regions the run learns, from `regions` and the recorded class names."""
        return parse_regions(self.regions, self.class_names) if self.regions else None

    def task_mode(self) -> str:
        """How the model's output channels are read: binary, multiclass or multilabel."""
        if self.regions:
            return "multilabel"
        return "multiclass" if self.class_names else "binary"

    def output_channels(self) -> int:
        """The model's output channels: 1 for binary masks, one per class for multiclass, one
        per region for multilabel."""
        if self.regions:
            return len(self.region_set().labels)
        return len(self.class_names) if self.class_names else 1

    def check(self) -> None:
        """Raise ValueError naming the first setting that is out of range."""
        from segkit import losses  # the loss registry needs Keras; a config alone does not

        if not self.data:
            raise ValueError("data: name the data folder to train on")
        if "mode" in self.loss_args:
            raise ValueError(
                "loss_args cannot set 'mode': training sets it from the model's output channels"
            )
        if self.loss not in losses.list():
            raise ValueError(
                f"unknown loss {self.loss!r}; choose one of {', '.join(losses.list())}"
            )
        if not self.class_names:  # read classes.json once; the run keeps the names
            found = resolve_classes(self.data, self.num_classes, self.classes)
            self.class_names = list(found.names) if found else []
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.mode == "binary" and self.class_names:
            raise ValueError(
                f"mode binary takes 0/255 masks, but the data has {len(self.class_names)} "
                "classes: use mode multiclass (or auto)"
            )
        if self.mode == "multiclass" and not self.class_names:
            raise ValueError(
                "mode multiclass needs label maps: give num_classes, classes or a classes.json"
            )
        if self.regions is not None:
            if not self.class_names:
                raise ValueError(
                    "regions are sets of labels of label maps: give num_classes, classes or a "
                    "classes.json"
                )
            if self.mode not in ("auto", "multilabel"):
                raise ValueError(f"regions train in mode multilabel, not {self.mode}")
            self.region_set()  # regions that cannot be read or painted fail here
        elif self.mode == "multilabel":
            raise ValueError("mode multilabel trains regions: give them with regions")
        self.preprocessing()  # channels, size and normalisation, checked where they are defined
        parse_slices(self.slices)  # a misspelt choice fails before any data is read
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")
        for name in ("epochs", "batch_size", "patience", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("layout", "on_problem", "schedule", "precision", "normalize", "split"):
            choices = _field(name).metadata["choices"]
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(choices)}"
                )
        if self.devices != "all" and not (str(self.devices).isdigit() and int(self.devices)):
            raise ValueError(f"devices must be all or a count, got {self.devices!r}")
        self.devices = self.devices if self.devices == "all" else int(self.devices)
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.crop is not None and not 0 < self.crop <= min(self.image_size):
            raise ValueError(
                f"crop must be between 1 and the image size {min(self.image_size)}, got {self.crop}"
            )
        self._check_recipe()

    def _check_recipe(self) -> None:
        """The warm-up, clipping, weight-averaging and batch-norm settings."""
        if self.warmup_epochs is not None and not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(
                f"warmup_epochs must be at least 0 and fewer than the {self.epochs} epochs, "
                f"got {self.warmup_epochs}"
            )
        if self.clipnorm is not None and self.clipnorm <= 0:
            raise ValueError(f"clipnorm must be positive, got {self.clipnorm}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ValueError(f"ema is a decay between 0 and 1, e.g. 0.99; got {self.ema}")
        if self.precise_bn < 0:
            raise ValueError(f"precise_bn must be 0 or more batches, got {self.precise_bn}")


def _field(name: str):
    return next(f for f in fields(TrainConfig) if f.name == name)


@dataclass
class RunState:
    """Where a run stands after its latest finished epoch."""

    epoch: int = 0
    best_dice: float = -1.0
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    history: list[dict] = field(default_factory=list)


def default_cache() -> str:
    """Where decoded slices are cached when a run names no ``cache``."""
    base = os.environ.get("SEGKIT_CACHE") or Path.home() / ".cache" / "segkit"
    return str(Path(base) / "data")


def read_state(checkpoint: str | Path) -> RunState:
    """The run state stored inside a ``last.keras`` checkpoint."""
    try:
        with zipfile.ZipFile(checkpoint) as archive:
            return RunState(**json.loads(archive.read(STATE_ENTRY)))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"{checkpoint} is not a segkit training checkpoint: {exc}") from None


class RunFolder:
    """The files of one run (see the module docstring), read and written only through here."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_file = self.path / "config.json"
        self.split_file = self.path / "split.json"
        self.last_checkpoint = self.path / "last.keras"
        self.best_checkpoint = self.path / "best.keras"
        self.log_file = self.path / "log.csv"
        self.curves_file = self.path / "curves.png"

    def __str__(self) -> str:
        return str(self.path)

    def holds_run(self) -> bool:
        """Whether a run was started here (its config is written)."""
        return self.config_file.exists()

    def remove_partial_files(self) -> None:
        """Delete half-written files a killed process left (the final files are never half
        written: each is replaced in one step from such a temporary file)."""
        for final in (
            self.config_file,
            self.split_file,
            self.last_checkpoint,
            self.best_checkpoint,
            self.log_file,
            self.curves_file,
        ):
            for partial in self.path.glob(f".{final.stem}.*{final.suffix}"):
                partial.unlink(missing_ok=True)

    def finished_an_epoch(self) -> bool:
        """Whether the run has a checkpoint; a folder without one holds nothing to resume."""
        return self.last_checkpoint.exists()

    def create(
        self,
        config: TrainConfig,
        split: Split,
        intensity: IntensityRange | None = None,
        trained_on: dict | None = None,
        volume_mapping: dict | None = None,
    ) -> None:
        """Write a new run's split and config, with the intensity range of its training
        images (see `segkit.data.intensity`), how many replicas and processes train it and,
        for volumes, how their voxels were mapped to 8 bits."""
        check_writable(self.path)
        split.save(self.split_file)
        self.write_config(config, intensity, trained_on, volume_mapping)

    def write_config(
        self,
        config: TrainConfig,
        intensity: IntensityRange | None = None,
        trained_on: dict | None = None,
        volume_mapping: dict | None = None,
    ) -> None:
        """(Re)write ``config.json`` with the versions that run it now; an intensity range
        (``trained_on``, ``volume_mapping``) already recorded is kept unless a new one is given."""
        import keras

        import segkit

        intensity = intensity or self.intensity()
        trained_on = trained_on or self._record().get("trained_on")
        volume_mapping = volume_mapping or self.volume_mapping()
        record = {
            "config": asdict(config),
            "segkit": segkit.__version__,
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
            **({"intensity": intensity.to_dict()} if intensity else {}),
            **({"trained_on": trained_on} if trained_on else {}),
            **({"volume_mapping": volume_mapping} if volume_mapping else {}),
        }
        write_json(self.config_file, record)

    def _record(self) -> dict:
        return json.loads(self.config_file.read_text()) if self.config_file.exists() else {}

    def volume_mapping(self) -> dict | None:
        """How a run trained on volumes mapped their voxels to 8 bits (None for 2-D files)."""
        return self._record().get("volume_mapping")

    def intensity(self) -> IntensityRange | None:
        """The intensity range of the run's training images, where it was recorded."""
        if not self.config_file.exists():
            return None
        record = json.loads(self.config_file.read_text()).get("intensity")
        return IntensityRange.from_dict(record) if record else None

    def config(self) -> TrainConfig:
        """The run's settings.

        Raises:
            FileNotFoundError: no run here.
            ValueError: ``config.json`` is not a segkit run config.
        """
        if not self.config_file.exists():
            raise FileNotFoundError(f"{self.path} holds no run (no config.json)")
        try:
            return TrainConfig(**json.loads(self.config_file.read_text())["config"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.config_file} is not a segkit run config: {exc}") from None

    def preprocessing(self) -> Preprocessing:
        """How the run's model expects its images."""
        return self.config().preprocessing()

    def split(self) -> Split:
        return Split.load(self.split_file)

    def state(self) -> RunState:
        """The state after the latest finished epoch; a fresh state before the first."""
        if not self.last_checkpoint.exists():
            return RunState()
        return read_state(self.last_checkpoint)

    def save_epoch(self, model, state: RunState, improved: bool, best_weights=None) -> None:
        """Commit a finished epoch: ``last.keras`` with the state inside, ``best.keras`` when
        the epoch improved, then the log and curves.

        ``best.keras`` is a copy of ``last.keras``, or ``model`` with ``best_weights``
        (``model.get_weights()`` order) where those were validated instead of the weights it
        trains: the moving average of a run with ``ema``.
        """
        with atomic_path(self.last_checkpoint) as tmp:
            model.save(tmp)
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(STATE_ENTRY, json.dumps(asdict(state)))
        if improved:
            with atomic_path(self.best_checkpoint) as tmp:
                if best_weights is None:
                    shutil.copyfile(self.last_checkpoint, tmp)
                else:
                    trained = model.get_weights()
                    model.set_weights(best_weights)
                    try:
                        model.save(tmp)
                    finally:
                        model.set_weights(trained)
        self.write_log(state.history)

    def write_log(self, history: list[dict]) -> None:
        """Rewrite ``log.csv`` and ``curves.png`` from the run's history."""
        if not history:
            return
        with atomic_path(self.log_file) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)
        plot_curves(history, self.curves_file)

    def load_last(self):
        """The model after the latest finished epoch, compiled with its optimizer state."""
        return load_keras(self.last_checkpoint, compile=True)

    def load_best(self):
        """The model at the best validation Dice, for inference.

        Raises:
            FileNotFoundError: the run has not finished an epoch.
        """
        if not self.best_checkpoint.exists() or not self.config_file.exists():
            raise FileNotFoundError(
                f"{self.path} is not a finished training run (needs best.keras and config.json)"
            )
        return load_keras(self.best_checkpoint)


def load_keras(path: str | Path, *, compile: bool = False):  # noqa: A002  (Keras' own word)
    """Load a ``.keras`` file in whatever layout this machine can run.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a usable Keras model; the message says why.
    """
    from segkit.models.layout import load_keras_model

    if compile:  # a training checkpoint names segkit's loss and metrics, registered on import
        import segkit.losses  # noqa: F401
        import segkit.metrics  # noqa: F401

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    if not zipfile.is_zipfile(path):  # Keras would call it "not found"
        raise ValueError(
            f"cannot load model file {path}: it is not a .keras archive (damaged or another format)"
        )
    try:
        return load_keras_model(path, compile=compile)
    except Exception as exc:  # zip, HDF5 and config errors all mean "not a usable model"
        raise ValueError(f"cannot load model file {path}: {exc}") from None
