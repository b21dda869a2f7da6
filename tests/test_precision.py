"""Running models in lower precision: bfloat16 Keras models, and ONNX session settings."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import segkit
from segkit import backend as segkit_backend
from segkit import data, inference
from segkit.cli import cli
from segkit.demo import sample_dir
from segkit.inference import load_model
from segkit.reports import evaluate

pytestmark = pytest.mark.backend

#: bfloat16 against float32 masks of the shipped model on the bundled slices: at most this
#: share of pixels may differ (measured: 131 of 1,179,648, 0.01%, all on tumour outlines).
BFLOAT16_PIXELS_CHANGED = 1e-3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("precision") / "tiny.keras"
    segkit.models.get("unet", input_shape=(32, 32, 1), base_filters=4, depth=2).save(path)
    return path


@pytest.fixture
def no_native_bfloat16(monkeypatch):
    """A CPU without AVX-512 BF16 or AMX, such as an AVX2-only one."""
    monkeypatch.setattr(segkit_backend, "native_bfloat16", lambda: False)


def _images():
    return [data.read_image(p) for p in sorted((sample_dir() / "images").glob("*.png"))]


def test_bfloat16_is_refused_where_it_would_be_emulated(tiny, no_native_bfloat16):
    with pytest.raises(ValueError, match="natively .* several times slower") as raised:
        load_model(tiny, precision="bfloat16")
    assert "\n" not in str(raised.value)
    with pytest.raises(ValueError, match="natively"):
        evaluate(tiny, sample_dir(), precision="bfloat16")
    with pytest.raises(ValueError, match="natively"):
        inference.predict(tiny, [sample_dir() / "images"], "unused", precision="bfloat16")


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_precision_option_refuses_in_one_line(tiny, no_native_bfloat16, tmp_path, command):
    where = [str(sample_dir() / "images")] if command == "predict" else ["--data", sample_dir()]
    args = [command, "--model", tiny, *where, "--out", tmp_path / "out", "--precision", "bfloat16"]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "several times slower than float32" in lines[0]


def test_bad_precision_requests(tiny, tmp_path):
    with pytest.raises(ValueError, match="precision must be one of"):
        load_model(tiny, precision="float16")
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"")
    with pytest.raises(ValueError, match="is for Keras models"):
        load_model(onnx_file, precision="bfloat16")


def test_bfloat16_model_computes_in_bfloat16_and_answers_in_float32(tiny, monkeypatch):
    monkeypatch.setattr(segkit_backend, "native_bfloat16", lambda: True)  # any CPU can run it
    float32, bfloat16 = load_model(tiny), load_model(tiny, precision="bfloat16")
    assert bfloat16.precision == "bfloat16" and float32.precision == "float32"
    computes = {layer.compute_dtype for layer in bfloat16.network.layers[1:-1]}
    assert computes == {"bfloat16"}
    assert bfloat16.network.layers[-1].compute_dtype == "float32"
    assert {w.dtype for w in bfloat16.network.weights} == {"float32"}
    assert float32.network.layers[1].compute_dtype == "float32"  # the original is untouched
    images = _images()
    assert np.asarray(bfloat16.run(np.zeros((1, 32, 32, 1), np.float32))).dtype == np.float32
    # bfloat16 keeps 8 bits of mantissa: close to float32, not equal.
    difference = np.abs(bfloat16.predict(images) - float32.predict(images)).max()
    assert 0 < difference < 0.05


def test_shipped_model_in_bfloat16_keeps_its_masks(tmp_path):
    """Where the CPU computes bfloat16, the shipped model's masks barely change; elsewhere it
    is refused."""
    if not segkit_backend.native_bfloat16():
        with pytest.raises(ValueError, match="natively"):
            load_model("resunet.figshare", precision="bfloat16")
        return
    # One pass each, without the weights' test-time augmentation: the eight passes it would
    # add change nothing about the precision and cost most of this test's time.
    images = [sample_dir() / "images"]
    float32 = inference.predict("resunet.figshare", images, tmp_path / "f32", defaults=False)
    bfloat16 = inference.predict(
        "resunet.figshare", images, tmp_path / "bf16", precision="bfloat16", defaults=False
    )
    changed = total = 0
    for a, b in zip(float32, bfloat16, strict=True):
        mask_a, mask_b = data.read_mask_file(a), data.read_mask_file(b)
        changed += int(np.sum(mask_a != mask_b))
        total += mask_a.size
    assert changed <= BFLOAT16_PIXELS_CHANGED * total, f"{changed} of {total} pixels changed"


def test_onnx_sessions_use_every_optimisation_and_one_thread_per_core(monkeypatch, tmp_path):
    import onnxruntime

    given = {}

    def session(path, options, providers):
        given["options"] = options
        raise RuntimeError("not an ONNX file")

    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    monkeypatch.setattr(inference.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match="cannot load ONNX model"):
        load_model(tmp_path / "model.onnx")
    assert given["options"].intra_op_num_threads == 1
    level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert given["options"].graph_optimization_level == level
