"""Inference on the CPU: every shipped model in float32 and bfloat16 Keras, float32 and int8 ONNX.

Side by side, in one run, for each shipped model (``segkit.models.pretrained.available()``):

* images/s at batch 1 and 8, running what ``segkit predict`` runs:
  ``segkit.load_model(spec, precision=...)`` and its forward pass; Keras on the TensorFlow
  backend; ONNX files exported by ``segkit export`` (``--quantize int8`` for int8, calibrated
  on its default slices, the bundled sample). bfloat16 runs only where the CPU computes it
  natively (`segkit.backend.native_bfloat16`): elsewhere segkit refuses it.
* each rate as a share of this machine's float32 peak (`float32_peak`), from the model's
  GFLOPs per image (`segkit.models.flops`); int8 and bfloat16 can pass 100%: that is the point;
* per-image Dice on the Figshare test blocks (``docs/manifests/figshare-256-blocks-seed0.json``,
  ``segkit.evaluate``) of each, against float32 Keras.

The reference row of every group is float32 ONNX, so "time vs baseline" of the int8 row is the
int8 speed-up the Deploying on CPU page quotes.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import numpy as np
import pytest

from segkit.backend import cpu_features, native_bfloat16
from segkit.inference import _physical_cores
from segkit.models import pretrained

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SEGKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
FIGSHARE = SHARED_DATA / "figshare-brain-tumor-256"

#: (row label, what runs, precision): the reference, float32 ONNX, is marked in `_record`.
VARIANTS = [
    ("float32 Keras (TensorFlow)", "keras", "float32"),
    ("float32 ONNX", "onnx", "float32"),
    ("int8 ONNX", "onnx-int8", "float32"),
    ("bfloat16 Keras (TensorFlow)", "keras", "bfloat16"),
]
VARIANT_IDS = ["keras-float32", "onnx-float32", "onnx-int8", "keras-bfloat16"]
#: batch: (warm-up steps, timed steps)
STEPS = {1: (2, 8), 8: (1, 4)}


def float32_peak() -> tuple[float, str]:
    """This machine's float32 limit in GFLOP/s, and how it was reckoned.

    Cores this process may use x clock x FLOP per cycle per core. FLOP per cycle: two FMA
    units, each a multiply and an add on every lane: 2 x 16 x 2 = 64 with AVX-512 on Intel
    Xeons (two 512-bit FMA units on the Xeon Scalable parts that have AVX-512 BF16 or AMX),
    32 on AMD Zen 4 (AVX-512 split over 256-bit units) and with AVX2 (2 x 8 x 2). The clock
    is the "cpu MHz" the kernel lists: the nominal one on a virtual machine; turbo clocks make
    the real limit higher and the shares lower.
    """
    features = cpu_features()
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    found = re.search(r"cpu MHz\s*:\s*([\d.]+)", text)
    ghz = float(found.group(1)) / 1000 if found else float("nan")
    intel = "GenuineIntel" in text
    if "avx512f" in features and intel:
        per_cycle, how = 64, "AVX-512 on two 512-bit FMA units: 2 x 16 float32 x 2"
    elif "avx512f" in features:
        per_cycle, how = 32, "AVX-512 on 256-bit units (AMD Zen 4): 2 x 8 float32 x 2"
    elif "fma" in features:
        per_cycle, how = 32, "AVX2 FMA: 2 units x 8 float32 x 2"
    else:
        per_cycle, how = 8, "SSE: 2 units x 4 float32, no FMA"
    cores = _physical_cores()
    peak = cores * ghz * per_cycle
    return peak, f"{cores} cores x {ghz:.2f} GHz x {per_cycle} FLOP/cycle ({how})"


def _require(*modules: str) -> None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")


@pytest.fixture(scope="session")
def exported(tmp_path_factory, measure):
    """``exported(model, kind)``: the model's ONNX file, float32 or int8, exported once."""
    _require("tensorflow", "onnxruntime")
    folder = tmp_path_factory.mktemp("cpu-inference")
    files: dict[tuple[str, str], str] = {}

    def get(model: str, kind: str) -> str:
        if (model, kind) not in files:
            path = folder / f"{model}.{kind}.onnx"
            quantize = ["--quantize", "int8"] if kind == "onnx-int8" else []
            record = measure("export", "--model", model, "--onnx", str(path), *quantize)
            files[model, kind] = record["onnx"]
        return files[model, kind]

    return get


def _spec(exported, model: str, kind: str) -> str:
    return model if kind == "keras" else exported(model, kind)


def _skip_unless_runs(kind: str, precision: str) -> None:
    _require("tensorflow")
    if kind != "keras":
        _require("onnxruntime")
    if precision == "bfloat16" and not native_bfloat16():
        pytest.skip("this CPU computes bfloat16 only by emulation (no AVX-512 BF16 or AMX)")


def _speed_args(spec: str, precision: str, batch: int) -> tuple[str, ...]:
    warmup, steps = STEPS[batch]
    return (
        "segmenter",
        "--model",
        spec,
        "--precision",
        precision,
        "--batch",
        str(batch),
        "--warmup",
        str(warmup),
        "--steps",
        str(steps),
    )


def _record(benchmark, label: str, kind: str, precision: str, **values) -> None:
    benchmark.extra_info.update(values)
    benchmark.extra_info.update(label=label, baseline=(kind, precision) == ("onnx", "float32"))


@pytest.mark.parametrize("batch", [1, 8], ids=lambda b: f"b{b}")
@pytest.mark.parametrize(("label", "kind", "precision"), VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("model", pretrained.available())
def test_cpu_inference_speed(benchmark, measure, exported, model, label, kind, precision, batch):
    """Images/s of one precision at one batch size, and its share of the float32 peak."""
    _skip_unless_runs(kind, precision)
    benchmark.group = f"CPU inference: {model}, batch {batch}"
    spec = _spec(exported, model, kind)
    result = benchmark.pedantic(
        measure, args=_speed_args(spec, precision, batch), rounds=1, iterations=1
    )
    # The model's GFLOPs, from the float32 Keras model (the ONNX files are the same network).
    gflops = measure(*_speed_args(model, "float32", batch))["gflops"]
    peak, how = float32_peak()
    _record(
        benchmark,
        label,
        kind,
        precision,
        time_s=result["time_s"],
        images_per_s=result["images_per_s"],
        peak_rss_mib=result["peak_rss_mib"],
        rss_increase_mib=result["rss_increase_mib"],
        gflop_per_image=gflops,
        share_of_float32_peak=result["images_per_s"] * gflops / peak,
    )
    if kind == "keras" and precision == "float32":  # once per table
        benchmark.extra_info["float32_peak"] = f"{peak:.0f} GFLOP/s = {how}"


@pytest.mark.parametrize(("label", "kind", "precision"), VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("model", pretrained.available())
def test_cpu_inference_dice(benchmark, measure, exported, model, label, kind, precision):
    """Per-image Dice on the Figshare test blocks, against float32 Keras on the same images."""
    _skip_unless_runs(kind, precision)
    if not FIGSHARE.is_dir():
        pytest.skip(f"the Figshare slices are not at {FIGSHARE}")
    benchmark.group = f"CPU inference: {model}, Dice on the Figshare test blocks"
    spec = _spec(exported, model, kind)
    args = ("segmenter", "--model", spec, "--precision", precision, "--dice")
    result = benchmark.pedantic(measure, args=args, rounds=1, iterations=1)
    reference = measure("segmenter", "--model", model, "--precision", "float32", "--dice")
    assert result["keys"] == reference["keys"]
    change = np.array(result["dice"]) - np.array(reference["dice"])
    _record(
        benchmark,
        label,
        kind,
        precision,
        time_s=result["evaluate_s"],
        images=len(change),
        dice_mean=result["dice_mean"],
        dice_change_mean=float(change.mean()),
        dice_change_largest=float(change[np.argmax(np.abs(change))]),
        images_changed_over_001=int(np.sum(np.abs(change) > 0.01)),
    )
