"""Export to ONNX and SavedModel, and running ONNX files with onnxruntime alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from PIL import Image

import segkit
from segkit import data, training
from segkit.cli import cli
from segkit.demo import sample_dir
from segkit.exporting import export, quality_path
from segkit.inference import (
    ONNX_INFERENCE_KEY,
    ONNX_METADATA_KEY,
    ONNX_QUANTIZATION_KEY,
    InferenceSettings,
    load_model,
    predict,
)
from segkit.models import pretrained
from segkit.reports import evaluate

pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    model = segkit.models.get("unet", input_shape=(32, 32, 1), base_filters=4, depth=2)
    model.save(folder / "tiny.keras")
    return folder


@pytest.fixture(scope="module")
def tiny_onnx(tiny, backend):
    """The tiny model as ONNX; on JAX, which cannot export, exported by a TensorFlow process
    from the same .keras file, as a user would do."""
    path = tiny / "tiny.onnx"
    if backend != "jax":
        return export(tiny / "tiny.keras", path)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "segkit.cli",
            "export",
            "--model",
            str(tiny / "tiny.keras"),
            "--out",
            str(path),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    return path


def test_onnx_masks_match_keras(tiny, tiny_onnx):
    onnx_path = tiny_onnx
    keras_masks, onnx_masks = tiny / "keras_masks", tiny / "onnx_masks"
    predict(tiny / "tiny.keras", [sample_dir() / "images"], keras_masks)
    predict(onnx_path, [sample_dir() / "images"], onnx_masks)
    for path in sorted(keras_masks.glob("*_mask.png")):
        a = np.asarray(Image.open(path)) > 0
        b = np.asarray(Image.open(onnx_masks / path.name)) > 0
        assert np.mean(a != b) < 1e-3, path.name  # only pixels at the threshold may differ
    segmenter = load_model(onnx_path)
    assert segmenter.network is None and segmenter.prep.size == (32, 32)


def test_onnx_predict_runs_without_a_deep_learning_backend(tiny_onnx, tmp_path):
    """With TensorFlow, PyTorch and JAX hidden, predicting with an .onnx file still works."""
    onnx_path = tiny_onnx
    code = (
        "import sys\n"
        "for name in ('tensorflow', 'torch', 'jax'): sys.modules[name] = None\n"
        "from segkit.cli import main\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "predict",
            "--model",
            str(onnx_path),
            str(sample_dir() / "images" / "955.png"),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "955_mask.png").is_file()


def test_saved_model_export(tiny, backend, tmp_path):
    if backend != "tensorflow":
        with pytest.raises(ValueError, match="needs KERAS_BACKEND=tensorflow"):
            export(tiny / "tiny.keras", tmp_path / "saved", format="tf_saved_model")
        return
    out = export(tiny / "tiny.keras", tmp_path / "saved", format="tf_saved_model")
    assert (out / "saved_model.pb").is_file()


def test_bad_export_requests(tiny, tmp_path):
    with pytest.raises(ValueError, match="must end in .onnx"):
        export(tiny / "tiny.keras", tmp_path / "model.bin")
    with pytest.raises(ValueError, match="format must be one of"):
        export(tiny / "tiny.keras", tmp_path / "m.onnx", format="tflite")
    if keras.backend.backend() == "jax":
        with pytest.raises(ValueError, match="not supported on the jax backend"):
            export(tiny / "tiny.keras", tmp_path / "m.onnx")


# int8 quantization ---------------------------------------------------------------------------


def _int8(tiny, out, calibration=None, **kwargs):
    return export(tiny / "tiny.keras", out, quantize="int8", calibration=calibration, **kwargs)


def test_int8_export_predicts_like_any_onnx_file(tiny, backend, tmp_path):
    out = tmp_path / "tiny-int8.onnx"
    if backend == "jax":
        with pytest.raises(ValueError, match="not supported on the jax backend"):
            _int8(tiny, out, sample_dir())
        return
    _int8(tiny, out, sample_dir())
    exported = onnx.load(str(out))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in exported.graph.node}
    metadata = {p.key: p.value for p in exported.metadata_props}
    assert json.loads(metadata[ONNX_METADATA_KEY])["size"] == [32, 32]

    int8 = load_model(out)
    assert int8.precision == "int8" and int8.prep.size == (32, 32)
    images = [data.read_image(p) for p in sorted((sample_dir() / "images").glob("*.png"))]
    float32 = load_model(tiny / "tiny.keras").predict(images)
    # int8 steps of the same function: small on average, a few hundredths at the worst pixel.
    difference = np.abs(int8.predict(images) - float32)
    assert difference.mean() < 0.005 and difference.max() < 0.15
    written = predict(out, [sample_dir() / "images"], tmp_path / "masks")
    assert len(written) == len(images)
    evaluated = evaluate(out, sample_dir())
    assert evaluated["n_images"] == len(images) and evaluated["model"] == str(out)


def test_int8_export_writes_its_dice_change_beside_it_and_inside(tiny, backend, tmp_path):
    if backend == "jax":
        return  # JAX cannot export: the test above checks the refusal
    out = _int8(tiny, tmp_path / "tiny-int8.onnx", sample_dir())
    quality = json.loads(quality_path(out).read_text())
    assert quality_path(out).name == "tiny-int8.onnx.json"
    inside = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(inside[ONNX_QUANTIZATION_KEY]) == quality
    # The bundled sample is a data folder with masks: calibrated and measured on its 6 slices.
    assert quality["calibrated_on"].startswith("6 slices: ")
    assert quality["measured_on"].endswith("(calibration slices)")
    for key in ("float32_dice_mean", "int8_dice_mean", "mask_agreement_dice_mean"):
        assert 0.0 <= quality[key] <= 1.0, key
    assert quality["mask_agreement_dice_min"] <= quality["mask_agreement_dice_mean"]
    assert 0.0 <= quality["pixels_changed"] < 0.5
    assert quality["dice_change_mean"] == pytest.approx(
        quality["int8_dice_mean"] - quality["float32_dice_mean"]
    )
    assert quality["dice_change_worst_image"] <= max(quality["dice_change_mean"], 0.0)


def test_int8_export_of_images_without_masks_measures_agreement_only(tiny, backend, tmp_path):
    if backend == "jax":
        return  # JAX cannot export: the first int8 test checks the refusal
    out = _int8(tiny, tmp_path / "tiny-int8.onnx", sample_dir() / "images")
    quality = json.loads(quality_path(out).read_text())
    assert "dice_change_mean" not in quality and "(calibration images)" in quality["measured_on"]
    assert 0.0 <= quality["mask_agreement_dice_mean"] <= 1.0


def test_int8_export_of_a_run_calibrates_on_its_training_split(backend, tmp_path):
    if backend == "jax":
        return  # JAX cannot export: the first int8 test checks the refusal
    keys = [s.key for s in data.find_samples(sample_dir())]
    manifest = tmp_path / "split.json"
    train, val, test = tuple(keys[:3]), (keys[3],), tuple(keys[4:])
    data.Split("random", 0, (0.5, 0.2, 0.3), train=train, val=val, test=test).save(manifest)
    run = tmp_path / "run"
    training.train(
        "unet",
        sample_dir(),
        run,
        quiet=True,
        manifest=str(manifest),
        cache=str(tmp_path / "cache"),
        epochs=1,
        image_size=(32, 32),
        batch_size=2,
        model_config={"base_filters": 4, "depth": 2},
        workers=1,
    )
    out = export(run, tmp_path / "run-int8.onnx", quantize="int8")
    quality = json.loads(quality_path(out).read_text())
    assert quality["calibrated_on"].startswith("3 slices: ")
    assert "3 training slices of run" in quality["calibrated_on"]
    assert quality["measured_on"].startswith("2 slices: ")
    assert "2 test slices of run" in quality["measured_on"]


def _activation_scales(path) -> np.ndarray:
    """The scale of every QuantizeLinear node, in graph order (names differ between exports)."""
    graph = onnx.load(str(path)).graph
    values = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    scales = [values[n.input[1]] for n in graph.node if n.op_type == "QuantizeLinear"]
    return np.array([float(scale) for scale in scales if scale.size == 1])


def test_int8_calibration_measures_every_slice(tiny, backend, tmp_path):
    """onnxruntime 1.32, asked to calibrate in chunks, drops each full chunk unmeasured: four
    slices failed outright and six were calibrated on the last two alone."""
    if backend == "jax":
        return  # JAX cannot export: the first int8 test checks the refusal
    images = sorted((sample_dir() / "images").glob("*.png"))
    folders = {"four": images[:4], "last": images[3:4]}
    for name, chosen in folders.items():
        (tmp_path / name).mkdir()
        for image in chosen:
            shutil.copy(image, tmp_path / name)
    four = _int8(tiny, tmp_path / "four.onnx", tmp_path / "four")
    last = _int8(tiny, tmp_path / "last.onnx", tmp_path / "last")
    assert json.loads(quality_path(four).read_text())["calibrated_on"].startswith("4 slices: ")
    four_scales, last_scales = _activation_scales(four), _activation_scales(last)
    assert four_scales.shape == last_scales.shape and four_scales.size > 0
    # Ranges over four slices are at least those of one, and wider somewhere.
    assert np.all(four_scales >= last_scales * (1 - 1e-6))
    assert np.any(four_scales > last_scales * 1.01)


@pytest.mark.parametrize("layout", ["images", "data folder"])
def test_calibration_names_an_unreadable_file(tiny, backend, tmp_path, layout):
    folder = tmp_path / "calibration"
    images = folder / "images" if layout == "data folder" else folder
    shutil.copytree(sample_dir() / "images", images)
    (images / "broken.png").write_bytes(b"this is no PNG")
    if layout == "data folder":
        shutil.copytree(sample_dir() / "masks", folder / "masks")
        shutil.copy(folder / "masks" / "955_mask.png", folder / "masks" / "broken_mask.png")
    if backend == "jax":
        with pytest.raises(ValueError, match="not supported on the jax backend"):
            _int8(tiny, tmp_path / "m.onnx", folder)
        return
    with pytest.raises(data.DataError, match="broken.png") as raised:
        _int8(tiny, tmp_path / "m.onnx", folder)
    assert "\n" not in str(raised.value)
    args = ["export", "--model", str(tiny / "tiny.keras"), "--out", str(tmp_path / "m.onnx")]
    result = CliRunner().invoke(cli, [*args, "--quantize", "int8", "--calibration", str(folder)])
    assert result.exit_code == 2
    assert "broken.png" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()


def test_bad_quantize_requests(tiny, tmp_path):
    with pytest.raises(ValueError, match="quantize must be one of"):
        export(tiny / "tiny.keras", tmp_path / "m.onnx", quantize="int4")
    with pytest.raises(ValueError, match="needs format='onnx'"):
        export(tiny / "tiny.keras", tmp_path / "saved", format="tf_saved_model", quantize="int8")
    with pytest.raises(ValueError, match="calibration is for quantize"):
        export(tiny / "tiny.keras", tmp_path / "m.onnx", calibration=sample_dir())
    if keras.backend.backend() != "jax":
        with pytest.raises(ValueError, match="needs slices to calibrate on"):
            _int8(tiny, tmp_path / "m.onnx")


# Inference settings ------------------------------------------------------------------------


def test_onnx_gives_the_keras_masks_with_tta_and_post_processing(tiny, tiny_onnx):
    images = [data.read_image(p) for p in sorted((sample_dir() / "images").glob("*.png"))]
    keras_model = load_model(tiny / "tiny.keras")
    # A random model: a threshold in the middle of its probabilities gives speckled masks,
    # with regions and holes for the post-processing to change.
    threshold = float(np.median(keras_model.predict(images)))
    options = {"threshold": threshold, "tta": "dihedral", "postprocess": "min-size=3,fill-holes"}
    keras_model, onnx_model = (load_model(m, **options) for m in (tiny / "tiny.keras", tiny_onnx))
    np.testing.assert_allclose(onnx_model.predict(images), keras_model.predict(images), atol=1e-5)
    keras_masks, onnx_masks = tiny / "keras_tta", tiny / "onnx_tta"
    predict(tiny / "tiny.keras", [sample_dir() / "images"], keras_masks, **options)
    predict(tiny_onnx, [sample_dir() / "images"], onnx_masks, **options)
    plain = tiny / "plain"
    predict(tiny_onnx, [sample_dir() / "images"], plain, threshold=threshold)
    changed = []
    for path in sorted(keras_masks.glob("*_mask.png")):
        a = np.asarray(Image.open(path)) > 0
        b = np.asarray(Image.open(onnx_masks / path.name)) > 0
        assert np.mean(a != b) < 1e-3, path.name  # only pixels at the threshold may differ
        changed.append(np.mean(b != (np.asarray(Image.open(plain / path.name)) > 0)))
    assert max(changed) > 0.01  # the options did change the masks


def test_an_export_carries_the_models_inference_defaults(backend, tmp_path, monkeypatch):
    tiny = {"input_shape": (32, 32, 1), "base_filters": 4, "depth": 2}
    prep = {"size": (32, 32), "channels": 1, "normalize": "divide255"}
    tuned = InferenceSettings(threshold=0.4, tta="flips", postprocess="largest,at-least-one")
    path = tmp_path / "unet-tuned.npz"
    network = segkit.models.get("unet", **tiny)
    digest = pretrained.save_weights(
        network, path, builder="unet", config=tiny, preprocessing=prep, inference=tuned
    )
    entry = pretrained.Pretrained("unet", "tuned", path.name, digest)
    monkeypatch.setitem(pretrained.PRETRAINED, ("unet", "tuned"), entry)
    monkeypatch.setattr(pretrained, "weights_path", lambda e: tmp_path / e.filename)
    out = tmp_path / "tuned.onnx"
    if backend == "jax":
        with pytest.raises(ValueError, match="not supported on the jax backend"):
            export("unet.tuned", out)
        return
    export("unet.tuned", out)
    metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(metadata[ONNX_INFERENCE_KEY]) == tuned.to_dict()
    assert load_model(out).settings == tuned
    assert load_model(out, defaults=False).settings == InferenceSettings()
