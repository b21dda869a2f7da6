"""Export to ONNX and SavedModel, and running ONNX files with onnxruntime alone."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

import segkit
from segkit.demo import sample_dir
from segkit.exporting import export
from segkit.inference import load_model, predict

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
