"""Compare int8 calibration options for one shipped model on the Figshare block split.

    python tools/int8_calibration_study.py unet.figshare val [NAME,NAME,...]

Exports the network (no inference defaults: threshold 0.5, no TTA) to float32 ONNX once, then
quantizes it with each calibration option (MinMax, percentile, entropy; calibrated on the 6
bundled slices or 32 training slices; some convolutions kept in float32) and prints, per
option, the per-image Dice change against float32 ONNX on the chosen subset and the speed-up
of one pass over it. Choose on ``val``; score the chosen option once on ``test``. Work files
go to /tmp/int8/<model>. The slices are read from ../shared/data beside the project or from
SEGKIT_SHARED_DATA.
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

import segkit
from segkit import data, evaluation
from segkit.data.splits import Split

model_name = sys.argv[1]
subset = sys.argv[2] if len(sys.argv) > 2 else "val"
work = Path(f"/tmp/int8/{model_name}")
work.mkdir(parents=True, exist_ok=True)
ROOT = Path(__file__).resolve().parents[1]
FIG = Path(os.environ.get("SEGKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
FIG = FIG / "figshare-brain-tumor-256"
seg = segkit.load_model(model_name, defaults=False)
prep = seg.prep
samples = data.find_samples(FIG)
split = Split.load(ROOT / "docs" / "manifests" / "figshare-256-blocks-seed0.json")
train, val, test = split.select(samples)
measure = {"val": val, "test": test}[subset]
loaded = [data.load_sample(s, prep) for s in measure]
X = np.stack([i for i, _ in loaded]).astype(np.float32)
T = np.stack([m[..., 0] for _, m in loaded]).astype(bool)
sample_dir = Path(segkit.__file__).parent / "sample"
calib6 = np.stack([data.load_sample(s, prep)[0] for s in data.find_samples(sample_dir)]).astype(
    np.float32
)
idx = np.linspace(0, len(train) - 1, 32).round().astype(int)
calib32 = np.stack([data.load_sample(train[i], prep)[0] for i in idx]).astype(np.float32)

float_path = work / "float32.onnx"
prepared = work / "prepared.onnx"
if not prepared.exists():
    seg.network(X[:1])
    seg.network.export(str(float_path), format="onnx", verbose=False)
    quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
g = onnx.load(str(prepared))
input_name = g.graph.input[0].name
upconvs = [n.name for n in g.graph.node if n.op_type == "ConvTranspose"]
decoder = [
    n.name for n in g.graph.node if n.op_type in ("Conv", "ConvTranspose") and "up1" in n.name
]
print(upconvs, decoder)
convs = [n.name for n in g.graph.node if n.op_type in ("Conv", "ConvTranspose")]


class Reader(CalibrationDataReader):
    def __init__(self, images):
        self.it = iter([{input_name: im[None]} for im in images])

    def get_next(self):
        return next(self.it, None)


def run(path, images):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    out = []
    t0 = time.perf_counter()
    for i in range(0, len(images), 8):
        out.append(s.run(None, {input_name: images[i : i + 8]})[0])
    return np.concatenate(out)[..., 0], time.perf_counter() - t0


def dice(P, T):
    return np.array([evaluation.score(p, t)["dice"] for p, t in zip(P, T)])


pf, tf = run(prepared, X)
fd = dice(pf > 0.5, T)
results = {
    "model": model_name,
    "subset": subset,
    "n": len(X),
    "float32_dice": fd.mean(),
    "float32_s": tf,
    "convs": len(convs),
    "rows": [],
}
print(model_name, subset, "float32", round(fd.mean(), 4), round(tf, 1), "s", flush=True)
configs = [
    ("minmax", CalibrationMethod.MinMax, {}, [], calib6),
    ("minmax-32train", CalibrationMethod.MinMax, {}, [], calib32),
    ("percentile-99.999", CalibrationMethod.Percentile, {"CalibPercentile": 99.999}, [], calib6),
    ("percentile-99.99", CalibrationMethod.Percentile, {"CalibPercentile": 99.99}, [], calib6),
    ("entropy", CalibrationMethod.Entropy, {}, [], calib6),
    ("minmax-firstlast-float", CalibrationMethod.MinMax, {}, [convs[0], convs[-1]], calib6),
    (
        "percentile-99.999-firstlast-float",
        CalibrationMethod.Percentile,
        {"CalibPercentile": 99.999},
        [convs[0], convs[-1]],
        calib6,
    ),
    ("entropy-firstlast-float", CalibrationMethod.Entropy, {}, [convs[0], convs[-1]], calib6),
    (
        "p9999-firstlast-float",
        CalibrationMethod.Percentile,
        {"CalibPercentile": 99.99},
        [convs[0], convs[-1]],
        calib6,
    ),
    ("p9999-32train", CalibrationMethod.Percentile, {"CalibPercentile": 99.99}, [], calib32),
    (
        "p9999-upconv-float",
        CalibrationMethod.Percentile,
        {"CalibPercentile": 99.99},
        upconvs,
        calib6,
    ),
    ("minmax-upconv-float", CalibrationMethod.MinMax, {}, upconvs, calib6),
    (
        "p9999-decoder-float",
        CalibrationMethod.Percentile,
        {"CalibPercentile": 99.99},
        decoder,
        calib6,
    ),
]
only = sys.argv[3].split(",") if len(sys.argv) > 3 else None
for name, method, extra, exclude, calib in configs:
    if only and name not in only:
        continue
    q = work / f"{name}.onnx"
    t0 = time.perf_counter()
    quantize_static(
        str(prepared),
        str(q),
        Reader(calib),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=method,
        nodes_to_exclude=exclude,
        extra_options=extra,
    )
    tq = time.perf_counter() - t0
    pq, ti = run(q, X)
    qd = dice(pq > 0.5, T)
    ch = qd - fd
    row = dict(
        name=name,
        quantize_s=tq,
        int8_dice=qd.mean(),
        change=ch.mean(),
        worst=ch.min(),
        speedup=tf / ti,
        agreement=dice(pq > 0.5, pf > 0.5).mean(),
    )
    results["rows"].append(row)
    print(
        json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}),
        flush=True,
    )
json.dump(results, open(work / f"results-{subset}.json", "w"), indent=1, default=float)
