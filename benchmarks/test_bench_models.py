"""Model speed: segkit's networks on each Keras backend against PyTorch-native peers.

Every configuration runs in a fresh worker process (:mod:`benchmarks.worker`); the tests only
start the workers and record their numbers in ``benchmark.extra_info``:

* ``time_s``: mean seconds per step measured inside the worker, warm-up excluded (the
  pytest-benchmark timing of these tests is the whole worker process, start-up included);
* ``images_per_s``, ``peak_rss_mib``, ``rss_increase_mib``, ``params``;
* ``label``: the row's name in the report; ``baseline``: the group's reference row.

The reference of the model groups is the plain PyTorch port of the notebook's U-Net: the same
network as segkit's ``unet``, without Keras.
"""

from __future__ import annotations

import importlib.util

import pytest

from benchmarks.peers import PEERS

#: (mode, batch, warm-up steps, timed steps): training and inference throughput at batch 8,
#: latency at batch 1. A 256x256 training step at batch 8 takes seconds on a 2-core CPU.
MODES = [
    ("train", 8, 1, 2),
    ("predict", 8, 1, 3),
    ("predict", 1, 2, 5),
]
MODE_GROUPS = {
    ("train", 8): "models: train, batch 8",
    ("predict", 8): "models: predict, batch 8",
    ("predict", 1): "models: predict, batch 1 (latency)",
}

#: (model, backend, data_format): None is segkit's default layout for the backend.
KERAS_CONFIGS = [
    ("unet", "tensorflow", None),
    ("unet", "torch", None),
    ("unet", "torch", "channels_last"),
    ("unet", "jax", None),
    ("resunet", "tensorflow", None),
    ("resunet", "torch", None),
    ("resunet", "jax", None),
    # The other architectures on the fastest backend, for choosing between them.
    ("fast_unet", "tensorflow", None),
    ("attention_unet", "tensorflow", None),
    ("unet_plus_plus", "tensorflow", None),
]
BASELINE_PEER = "notebook_unet"


def _require(*modules: str) -> None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")


def _mode_id(mode) -> str:
    return f"{mode[0]}-b{mode[1]}"


def _record(benchmark, result: dict, label: str, baseline: bool = False) -> None:
    keys = (
        "time_s",
        "images_per_s",
        "peak_rss_mib",
        "rss_increase_mib",
        "params",
        "batch",
        "size",
        "data_format",
        "device",
        "gpu_peak_mib",
    )
    benchmark.extra_info.update({key: result[key] for key in keys if key in result})
    benchmark.extra_info.update(label=label, baseline=baseline)


def _run(benchmark, measure, *args: str) -> dict:
    return benchmark.pedantic(measure, args=args, rounds=1, iterations=1)


def _keras_args(model, backend, data_format, mode) -> list[str]:
    name, batch, warmup, steps = mode
    args = [
        "keras",
        "--backend",
        backend,
        "--model",
        model,
        "--mode",
        name,
        "--batch",
        str(batch),
        "--warmup",
        str(warmup),
        "--steps",
        str(steps),
    ]
    return args + (["--data-format", data_format] if data_format else [])


@pytest.mark.parametrize("mode", MODES, ids=_mode_id)
@pytest.mark.parametrize(
    ("model", "backend", "data_format"),
    KERAS_CONFIGS,
    ids=[f"{m}-{b}" + (f"-{f}" if f else "") for m, b, f in KERAS_CONFIGS],
)
def test_segkit(benchmark, measure, mode, model, backend, data_format):
    """segkit's ``model`` on Keras ``backend``, in its default layout unless one is named."""
    _require(backend)
    benchmark.group = MODE_GROUPS[mode[:2]]
    result = _run(benchmark, measure, *_keras_args(model, backend, data_format, mode))
    layout = data_format or f"{result['data_format']}, default"
    _record(benchmark, result, f"segkit {model}, Keras {backend} ({layout})")


def test_segkit_mixed_bfloat16(benchmark, measure):
    """``segkit train --precision mixed_bfloat16``: the U-Net's training step in bfloat16."""
    _require("tensorflow")
    mode = MODES[0]
    benchmark.group = MODE_GROUPS[mode[:2]]
    args = _keras_args("unet", "tensorflow", None, mode) + ["--precision", "mixed_bfloat16"]
    result = _run(benchmark, measure, *args)
    _record(
        benchmark,
        result,
        f"segkit unet, Keras tensorflow ({result['data_format']}, mixed_bfloat16)",
    )


@pytest.mark.parametrize("mode", MODES, ids=_mode_id)
@pytest.mark.parametrize("peer", list(PEERS))
def test_peer(benchmark, measure, mode, peer):
    """A PyTorch-native network of the same size (:mod:`benchmarks.peers`)."""
    _require("torch", *(["monai"] if peer.startswith("monai") else []))
    name, batch, warmup, steps = mode
    benchmark.group = MODE_GROUPS[(name, batch)]
    result = _run(
        benchmark,
        measure,
        "torch",
        "--model",
        peer,
        "--mode",
        name,
        "--batch",
        str(batch),
        "--warmup",
        str(warmup),
        "--steps",
        str(steps),
    )
    _record(benchmark, result, PEERS[peer], baseline=peer == BASELINE_PEER)


@pytest.fixture(scope="session")
def onnx_unet(tmp_path_factory, measure) -> str:
    """segkit's ``unet`` exported to ONNX from the TensorFlow backend."""
    _require("tensorflow", "tf2onnx", "onnxruntime")
    path = tmp_path_factory.mktemp("onnx") / "unet.onnx"
    return measure("export", "--model", "unet", "--onnx", str(path))["onnx"]


@pytest.mark.parametrize("batch", [1, 8], ids=lambda b: f"b{b}")
def test_onnx_keras_predict(benchmark, measure, batch):
    """The reference for the exported model: ``model.predict`` on the TensorFlow backend."""
    _require("tensorflow")
    benchmark.group = f"ONNX: predict, batch {batch}"
    mode = next(m for m in MODES if m[:2] == ("predict", batch))
    result = _run(benchmark, measure, *_keras_args("unet", "tensorflow", None, mode))
    _record(benchmark, result, "segkit unet, Keras tensorflow model.predict", baseline=True)


@pytest.mark.parametrize("batch", [1, 8], ids=lambda b: f"b{b}")
def test_onnx_runtime(benchmark, measure, onnx_unet, batch):
    """The same network exported to ONNX, on onnxruntime's CPU provider."""
    benchmark.group = f"ONNX: predict, batch {batch}"
    mode = next(m for m in MODES if m[:2] == ("predict", batch))
    result = _run(
        benchmark,
        measure,
        "onnxruntime",
        "--onnx",
        onnx_unet,
        "--batch",
        str(batch),
        "--warmup",
        str(mode[2]),
        "--steps",
        str(mode[3]),
    )
    _record(benchmark, result, "segkit unet exported to ONNX, onnxruntime CPU")
