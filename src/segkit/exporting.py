"""Exporting a model for serving without Keras: ONNX or a TensorFlow SavedModel.

ONNX files carry the preprocessing they expect, the model's inference defaults (threshold,
test-time augmentation, post-processing: `segkit.inference.InferenceSettings`) and the
intensity range of its training images, where it records one, in their metadata, so
``segkit predict`` runs them on onnxruntime alone (``pip install 'segkit[onnx]'``), makes the
masks the Keras model makes and points out the same inputs unlike its training images.
Exported models take channels-last ``(B, H, W, C)`` float32 input, like the Keras models.

Export runs on the TensorFlow and PyTorch backends. On JAX, Keras' ONNX path produced a graph
that onnxruntime rejects (MaxPool "Unsupported pooling size", Keras 3.15), so segkit refuses it:
``.keras`` files load on every backend, so export the same file with ``KERAS_BACKEND=tensorflow``.

``quantize="int8"`` writes an int8 ONNX model instead (onnxruntime static quantization: QDQ
format, per-channel weights, activation ranges calibrated on real slices), several times faster
on CPUs with VNNI. Its Dice is measured against the float32 model's before it is written, and
the measurement (`ONNX_QUANTIZATION_KEY`) is stored in the file's metadata and beside it, as
``<name>.onnx.json``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
import warnings
from dataclasses import asdict
from importlib.resources import files
from pathlib import Path

import numpy as np

from segkit import data, evaluation
from segkit._io import atomic_path, write_json
from segkit.data.samples import image_files
from segkit.inference import (
    ONNX_INFERENCE_KEY,
    ONNX_INTENSITY_KEY,
    ONNX_METADATA_KEY,
    ONNX_QUANTIZATION_KEY,
    ONNX_REGIONS_KEY,
    Segmenter,
    load_model,
)
from segkit.models import split_name
from segkit.progress import Progress
from segkit.runs import RunFolder

FORMATS = ("onnx", "tf_saved_model")
QUANTIZATIONS = ("int8",)
#: Slices that calibrate the activation ranges: more add little to MinMax ranges but time.
CALIBRATION_IMAGES = 32
#: Held-out slices the Dice change is measured on, when a run's split names them.
MEASURE_IMAGES = 64


def _export_onnx(network, path: Path) -> None:
    with warnings.catch_warnings():
        # The exporter probes np.object, which numpy warns about; nothing the user can act on.
        warnings.filterwarnings("ignore", "In the future `np.object`", FutureWarning)
        network.export(str(path), format="onnx", verbose=False)


def export(
    model: str | Path,
    out: str | Path,
    *,
    format: str = "onnx",
    weights: str | None = None,
    quantize: str | None = None,
    calibration: str | Path | None = None,
    random_weights: bool = False,
    progress: bool = False,
) -> Path:
    """Export a model spec (run folder, ``.keras`` file, or registry name) to ``out``.

    Args:
        model: what to export; see `segkit.inference` for the forms.
        out: the ``.onnx`` file, or the SavedModel folder, to write.
        format: ``"onnx"`` or ``"tf_saved_model"`` (needs the TensorFlow backend).
        weights: weights tag when ``model`` is a registry name.
        quantize: ``"int8"`` writes an int8 ONNX model (see the module docstring); None keeps
            float32.
        calibration: with ``quantize``, the slices that calibrate it: a data folder with masks
            (any layout `segkit.data.find_samples` reads; the Dice change is then measured on
            them) or a folder of images. Default: a sample of a run folder's training split
            (the Dice change measured on its test split), or the bundled sample slices for
            shipped weights.
        random_weights: allow a bare registry name, which means untrained weights.
        progress: with ``quantize``, show the calibration and measurement slices done, the
            rate and the time left on standard error.

    Returns:
        ``out``.

    Raises:
        ValueError: a bad format, quantization or output name; calibration missing where there
            is no default; an unreadable calibration image (`segkit.data.DataError` names it).
    """
    import keras

    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS} or None, got {quantize!r}")
    if quantize is not None and format != "onnx":
        raise ValueError(f"quantize={quantize!r} needs format='onnx'")
    if calibration is not None and quantize is None:
        raise ValueError("calibration is for quantize='int8'; a float32 export needs none")
    out = Path(out)
    if format == "onnx" and out.suffix != ".onnx":
        raise ValueError(f"ONNX output {out} must end in .onnx")
    backend = keras.backend.backend()
    if format == "tf_saved_model" and backend != "tensorflow":
        raise ValueError("tf_saved_model export needs KERAS_BACKEND=tensorflow")
    if format == "onnx" and backend not in ("tensorflow", "torch"):
        raise ValueError(
            f"ONNX export is not supported on the {backend} backend; run it with "
            "KERAS_BACKEND=tensorflow (or torch): model files load on every backend"
        )
    if format == "onnx" and importlib.util.find_spec("onnx") is None:
        raise ImportError("ONNX export needs the onnx package: pip install 'segkit[export]'")
    segmenter = load_model(model, weights, random_weights=random_weights)
    if segmenter.network is None:
        raise ValueError(f"{model} is already an exported model")
    slices = None
    if quantize is not None:
        # Read the slices first: a bad calibration file fails before minutes of export.
        slices = _calibration_slices(model, weights, segmenter, calibration)
    network, prep = segmenter.network, segmenter.prep
    height, width, channels = network.input_shape[1:]
    # Exporters trace the model, which needs it to have run once.
    network(np.zeros((1, height or prep.size[0], width or prep.size[1], channels), np.float32))
    out.parent.mkdir(parents=True, exist_ok=True)
    if format == "onnx" and slices is not None:
        return _export_int8(segmenter, out, slices, progress)
    if format == "onnx":
        import onnx

        with atomic_path(out) as tmp:
            _export_onnx(network, tmp)
            exported = onnx.load(str(tmp))
            _set_metadata(exported, _metadata(segmenter))
            onnx.save(exported, str(tmp))
        return out
    # Export beside the target, then swap folders, so a failure leaves any old export intact.
    staging, old = out.with_name(f".{out.name}.partial"), out.with_name(f".{out.name}.old")
    try:
        network.export(str(staging), format="tf_saved_model", verbose=False)
        if out.exists():
            out.rename(old)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return out


def _metadata(segmenter: Segmenter) -> dict[str, str]:
    """What an exported file carries: the preprocessing, the inference defaults and the
    training images' intensity range."""
    entries = {
        ONNX_METADATA_KEY: json.dumps(asdict(segmenter.prep)),
        ONNX_INFERENCE_KEY: json.dumps(segmenter.settings.to_dict()),
    }
    if segmenter.intensity is not None:
        entries[ONNX_INTENSITY_KEY] = json.dumps(segmenter.intensity.to_dict())
    if segmenter.regions:
        regions = segmenter.regions
        entries[ONNX_REGIONS_KEY] = json.dumps(
            {"names": regions.names, "labels": regions.labels, "classes": segmenter.class_names}
        )
    return entries


def _set_metadata(model, entries: dict[str, str]) -> None:
    """Set ONNX metadata entries, replacing any of the same key."""
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    for key, value in [*kept, *entries.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


class _Slices:
    """Preprocessed slices for quantization: what calibrates it and what its Dice is measured on.

    Attributes:
        calibration: float32 ``(N, H, W, C)`` images at the model's input.
        calibration_source: where they came from, for the quality record.
        measure: images to compare float32 and int8 masks on.
        truth: their true masks ``(M, H, W)`` at the model's size, or None without masks.
        measure_source: where those came from.
    """

    def __init__(self, calibration, calibration_source, measure, truth, measure_source):
        self.calibration, self.calibration_source = calibration, calibration_source
        self.measure, self.truth, self.measure_source = measure, truth, measure_source


def _calibration_slices(model, weights, segmenter: Segmenter, folder) -> _Slices:
    prep = segmenter.prep
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"calibration folder {folder} does not exist")
        samples = _samples_or_none(folder)
        if samples is None:  # a folder of images without masks
            paths = _spread(image_files([folder]), CALIBRATION_IMAGES)
            images = np.stack([_model_input(p, prep) for p in paths])
            return _Slices(images, str(folder), images, None, f"{folder} (calibration images)")
        return _from_samples(samples, samples, prep, str(folder), f"{folder} (calibration slices)")
    if Path(model).is_dir():
        run = RunFolder(model)
        config = run.config()
        train, val, test = run.split().select(data.find_samples(config.data, config.layout))
        held_out, part = (test, "test") if test else (val, "validation")
        if not train or not held_out:
            raise ValueError(
                f"run {model} has no training or held-out slices in {config.data}: "
                "pass calibration=DIR (--calibration)"
            )
        return _from_samples(
            train,
            held_out,
            prep,
            f"{config.data} ({len(train)} training slices of run {model})",
            f"{config.data} ({len(held_out)} {part} slices of run {model}, held out)",
        )
    path = Path(model)
    if path.suffix != ".keras" and (split_name(str(model))[1] or weights):
        # Shipped weights: the bundled sample slices (segkit.demo.sample_dir, a layer above).
        samples = data.find_samples(Path(str(files("segkit") / "sample")))
        source = "segkit's bundled sample slices"
        return _from_samples(samples, samples, prep, source, f"{source} (calibration slices)")
    raise ValueError(
        f"int8 export of {model} needs slices to calibrate on: pass calibration=DIR "
        "(--calibration DIR), a data folder or a folder of images"
    )


def _samples_or_none(folder: Path):
    """The image/mask pairs of a data folder, or None for a folder of images alone."""
    try:
        data.detect_layout(folder)
    except data.DataError:
        return None
    return data.find_samples(folder)


def _spread(items: list, count: int) -> list:
    """``count`` items spread evenly over ``items`` (all of them when there are fewer)."""
    if len(items) <= count:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def _model_input(path: Path, prep: data.Preprocessing) -> np.ndarray:
    return data.normalize(data.resize_image(data.read_image(path, prep.channels), prep.size), prep)


def _from_samples(calibrate, measure, prep, calibration_source, measure_source) -> _Slices:
    images = np.stack(
        [data.load_sample(s, prep)[0] for s in _spread(calibrate, CALIBRATION_IMAGES)]
    )
    loaded = [data.load_sample(s, prep) for s in _spread(measure, MEASURE_IMAGES)]
    measured = np.stack([image for image, _ in loaded])
    truth = np.stack([mask[..., 0] for _, mask in loaded])
    return _Slices(images, calibration_source, measured, truth, measure_source)


def _export_int8(segmenter: Segmenter, out: Path, slices: _Slices, progress: bool) -> Path:
    """Export float32 ONNX to a scratch folder, quantize it, measure it, then write ``out``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calibrated = Progress(len(slices.calibration), "slices", "calibrate", enabled=progress)

    class Reader(CalibrationDataReader):
        def __init__(self, name: str):
            self.feeds = iter([{name: image[None]} for image in slices.calibration])
            self.started = False

        def get_next(self):
            # onnxruntime asks for the next slice once it ran the last one
            if self.started and calibrated.done < calibrated.total:
                calibrated.update()
            self.started = True
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory(prefix="segkit-int8-") as scratch:
        float_path, prepared, quantized = (
            Path(scratch) / n for n in ("float32.onnx", "prepared.onnx", "int8.onnx")
        )
        _export_onnx(segmenter.network, float_path)
        # Shape inference and graph clean-up first, as onnxruntime recommends for quantizing;
        # ONNX's own shape inference, as onnxruntime's symbolic one fails on torch's graphs.
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        input_name = onnx.load(str(prepared)).graph.input[0].name
        quantize_static(
            str(prepared),
            str(quantized),
            Reader(input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            # MinMax keeps only each tensor's minimum and maximum per slice. No
            # CalibMaxIntermediateOutputs: onnxruntime 1.32 drops each full chunk of slices
            # unmeasured, so ranges came from the last (count mod chunk) slices alone.
            calibrate_method=CalibrationMethod.MinMax,
        )
        quality = _measure(float_path, quantized, segmenter.threshold, slices, progress)
        exported = onnx.load(str(quantized))
        _set_metadata(
            exported, {**_metadata(segmenter), ONNX_QUANTIZATION_KEY: json.dumps(quality)}
        )
        with atomic_path(out) as tmp:
            onnx.save(exported, str(tmp))
    write_json(quality_path(out), quality)
    return out


def quality_path(onnx_path: str | Path) -> Path:
    """Where an int8 ONNX file's quality record is written beside it: ``<name>.onnx.json``."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.name + ".json")


def _measure(
    float_path: Path, int8_path: Path, threshold: float, slices: _Slices, progress: bool
) -> dict:
    """Masks of the float32 and int8 models on the measurement slices, compared.

    Returns:
        The quality record: what calibrated and what measured the model, each model's mean
        per-image Dice against the true masks with their difference (when the slices have
        masks), and how closely the int8 masks match the float32 ones.
    """
    masks = {}
    measured = Progress(2 * len(slices.measure), "slices", "measure", enabled=progress)
    for name, path in (("float32", float_path), ("int8", int8_path)):
        run = load_model(path).run
        batches = []
        for start in range(0, len(slices.measure), 8):
            batches.append(run(slices.measure[start : start + 8]))
            measured.update(len(batches[-1]))
        probabilities = np.concatenate(batches)
        masks[name] = probabilities[..., 0] > threshold

    def dice(pred, true) -> np.ndarray:
        return np.array([evaluation.score(p, t)["dice"] for p, t in zip(pred, true)])

    agreement = dice(masks["int8"], masks["float32"])
    record = {
        "quantization": "int8: onnxruntime static, QDQ, per-channel int8 weights, uint8 "
        "activations calibrated with MinMax",
        "calibrated_on": f"{len(slices.calibration)} slices: {slices.calibration_source}",
        "measured_on": f"{len(slices.measure)} slices: {slices.measure_source}",
        "threshold": threshold,
        "mask_agreement_dice_mean": float(agreement.mean()),
        "mask_agreement_dice_min": float(agreement.min()),
        "pixels_changed": float(np.mean(masks["int8"] != masks["float32"])),
    }
    if slices.truth is not None:
        truth = slices.truth.astype(bool)
        float_dice, int8_dice = dice(masks["float32"], truth), dice(masks["int8"], truth)
        change = int8_dice - float_dice
        record.update(
            float32_dice_mean=float(float_dice.mean()),
            int8_dice_mean=float(int8_dice.mean()),
            dice_change_mean=float(change.mean()),
            dice_change_worst_image=float(change.min()),
        )
    return record
