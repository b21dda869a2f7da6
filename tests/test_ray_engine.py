"""Predict and evaluate on Ray (``--engine ray``): the same masks and reports as the local engine,
restartable, and a worker killed mid-run costs only a retry.

A local Ray runtime of 2 CPUs on loopback, in a temporary folder of its own (so two pytest
workers each start theirs without clashing), serves the whole module and is shut down after;
the fixture checks that no Ray process outlives it. Keras models on the workers are tested on
every backend by the images test; the others run the model exported to ONNX (float32 and int8),
which workers load in a moment, without a backend.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from lgg_volumes import build_layout

import segkit
import segkit.volumes
from segkit.cli import cli
from segkit.inference import Segmenter
from segkit.ray_engine import SUMMARY_FILE, RayOptions

SAMPLE = Path(segkit.__file__).parent / "sample"
MODEL = "fast_unet.figshare"  # the smallest shipped model; TTA off keeps each run short
NUMBERS = range(10, 18)  # eight slices of each LGG patient, 64x64 (every 4th pixel)


def descendants(pid: int) -> list[int]:
    """Processes started, directly or not, by ``pid`` (read from /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.fixture(scope="module")
def ray_runtime():
    import ray

    # Short: Ray's socket paths under it must stay within the 107 characters Unix allows.
    folder = tempfile.mkdtemp(prefix="segkit-ray-", dir="/tmp")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=folder,
        logging_level="WARNING",
    )
    yield ray
    ray.shutdown()
    deadline = time.monotonic() + 30
    while (left := [p for p in descendants(os.getpid()) if "ray" in command_line(p)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.5)
    shutil.rmtree(folder, ignore_errors=True)
    assert not left, f"Ray processes outlived the runtime: {[command_line(p) for p in left]}"


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory) -> dict[str, Path]:
    """The shipped model exported to float32 and int8 ONNX: workers load them in a moment, with
    no deep-learning backend, so the tests that run the engine several times use them."""
    folder = tmp_path_factory.mktemp("onnx")
    return {
        "float32": segkit.export(MODEL, folder / "fast.onnx"),
        "int8": segkit.export(MODEL, folder / "fast-int8.onnx", quantize="int8"),
    }


@pytest.fixture(scope="module")
def layout(lgg_root, tmp_path_factory):
    """Two LGG patients as NIfTI volumes in the volume layout."""
    patients = sorted(p.name for p in lgg_root.iterdir() if p.is_dir())[:2]
    root = tmp_path_factory.mktemp("ray-layout")
    build_layout(lgg_root, patients, root, numbers=NUMBERS, step=4)
    return root


def read_masks(folder: Path, pattern: str) -> dict[str, np.ndarray]:
    files = sorted(folder.glob(pattern))
    if pattern.endswith(".png"):
        return {f.name: iio.imread(f) for f in files}
    return {f.name: np.asanyarray(nib.load(f).dataobj) for f in files}


def assert_same_masks(local: dict, on_ray: dict) -> None:
    assert sorted(on_ray) == sorted(local)
    for name, mask in local.items():
        np.testing.assert_array_equal(on_ray[name], mask, err_msg=name)
    assert any(mask.any() for mask in local.values())  # the model finds some tumour


def hidden_files(folder: Path) -> list[str]:
    """Temporary files of atomic writes: what a kill mid-write would leave."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.backend
def test_predict_images_on_ray_as_locally(ray_runtime, tmp_path):
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    segkit.predict(MODEL, [SAMPLE / "images"], local, tta="none", overlays=True)
    args = ["predict", "--model", MODEL, str(SAMPLE / "images"), "--out", str(on_ray)]
    args += ["--tta", "none", "--overlays", "--engine", "ray", "--workers", "1", "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "6 masks written" in result.output and SUMMARY_FILE in result.output
    assert_same_masks(read_masks(local, "*_mask.png"), read_masks(on_ray, "*_mask.png"))
    assert_same_masks(read_masks(local, "*_overlay.png"), read_masks(on_ray, "*_overlay.png"))
    summary = json.loads((on_ray / SUMMARY_FILE).read_text())
    assert (summary["done"], summary["skipped"], summary["failed"]) == (6, 0, 0)
    assert summary["workers"] == 1 and summary["model"] == MODEL
    assert all(f["seconds"] > 0 and f["worker"] for f in summary["files"])


def test_a_restart_skips_complete_outputs(ray_runtime, onnx_models, tmp_path):
    model, local, on_ray = onnx_models["int8"], tmp_path / "local", tmp_path / "ray"
    segkit.predict(model, [SAMPLE / "images"], local)
    segkit.predict(model, [SAMPLE / "images"], on_ray, engine="ray")
    assert_same_masks(read_masks(local, "*_mask.png"), read_masks(on_ray, "*_mask.png"))

    # The mask is written last: an image without one is redone, the others are skipped, and
    # a temporary file a killed writer left is cleared.
    first = sorted(on_ray.glob("*_mask.png"))[0]
    first.unlink()
    (on_ray / ".172_mask.abcd1234.png").write_bytes(b"half a picture")
    before = {p.name: p.stat().st_mtime_ns for p in on_ray.glob("*_mask.png")}
    segkit.predict(model, [SAMPLE / "images"], on_ray, engine="ray")
    summary = json.loads((on_ray / SUMMARY_FILE).read_text())
    assert (summary["done"], summary["skipped"]) == (1, 5)
    redone = [f for f in summary["files"] if f["status"] == "done"]
    assert [Path(f["output"]).name for f in redone] == [first.name]
    after = {p.name: p.stat().st_mtime_ns for p in on_ray.glob("*_mask.png") if p != first}
    assert after == before
    assert_same_masks(read_masks(local, "*_mask.png"), read_masks(on_ray, "*_mask.png"))
    assert hidden_files(on_ray) == []

    segkit.predict(model, [SAMPLE / "images"], on_ray, engine="ray", overwrite=True)
    summary = json.loads((on_ray / SUMMARY_FILE).read_text())
    assert (summary["done"], summary["skipped"]) == (6, 0)


def test_predict_volumes_on_ray_as_locally(ray_runtime, onnx_models, layout, tmp_path):
    model, local, on_ray = onnx_models["int8"], tmp_path / "local", tmp_path / "ray"
    segkit.volumes.predict_volumes(model, [layout / "imagesTr"], local)
    written = segkit.volumes.predict_volumes(
        model, [layout / "imagesTr"], on_ray, engine="ray", ray=RayOptions(workers=2)
    )
    assert [p.name for p in written] == sorted(read_masks(local, "*_mask.nii.gz"))
    assert_same_masks(read_masks(local, "*_mask.nii.gz"), read_masks(on_ray, "*_mask.nii.gz"))
    for record in sorted(local.glob("*_mask.json")):
        assert json.loads((on_ray / record.name).read_text()) == json.loads(record.read_text())
    summary = json.loads((on_ray / SUMMARY_FILE).read_text())
    assert (summary["done"], summary["failed"]) == (2, 0)


def test_evaluate_on_ray_reports_as_locally(ray_runtime, onnx_models, layout, tmp_path):
    segmenter = segkit.load_model(onnx_models["float32"], tta="none")
    for data_dir in (SAMPLE, layout):  # images, then volumes scored in 3-D too
        local = segkit.evaluate(segmenter, data_dir, tmp_path / "local.json", batch_size=4)
        on_ray = segkit.evaluate(
            segmenter, data_dir, tmp_path / "ray.json", batch_size=4, engine="ray"
        )
        assert json.dumps(on_ray) == json.dumps(local)
        assert (tmp_path / "ray.json").read_text() == (tmp_path / "local.json").read_text()
    assert on_ray["n_volumes"] == 2


def test_a_worker_killed_mid_run_costs_a_retry(ray_runtime, onnx_models, tmp_path):
    model = onnx_models["float32"]
    inputs, local, on_ray = tmp_path / "images", tmp_path / "local", tmp_path / "ray"
    inputs.mkdir()
    for copy in range(5):  # 30 images, so that the run lasts past the kill
        for image in sorted((SAMPLE / "images").glob("*.png")):
            shutil.copy(image, inputs / f"{copy}-{image.name}")
    segkit.predict(model, [inputs], local)
    killed = []

    def kill_a_worker_after_two_masks():
        deadline = time.monotonic() + 300
        while len(list(on_ray.glob("*_mask.png"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        workers = [p for p in descendants(os.getpid()) if "ray::MapWorker" in command_line(p)]
        if workers:
            os.kill(workers[0], signal.SIGKILL)
            killed.append(workers[0])

    killer = threading.Thread(target=kill_a_worker_after_two_masks)
    killer.start()
    segkit.predict(model, [inputs], on_ray, engine="ray", ray=RayOptions(workers=1))
    killer.join()
    assert killed, "no worker process was found to kill"
    summary = json.loads((on_ray / SUMMARY_FILE).read_text())
    assert (summary["done"], summary["failed"]) == (30, 0)
    by_killed = [f for f in summary["files"] if f["worker"].endswith(f":{killed[0]}")]
    assert 0 < len(by_killed) < 30, "the kill did not land mid-run"
    assert_same_masks(read_masks(local, "*_mask.png"), read_masks(on_ray, "*_mask.png"))
    assert hidden_files(on_ray) == []


def test_a_failing_file_is_reported_and_the_others_written(ray_runtime, onnx_models, tmp_path):
    inputs = tmp_path / "images"
    inputs.mkdir()
    shutil.copy(SAMPLE / "images" / "172.png", inputs)
    (inputs / "broken.png").write_bytes(b"not a picture")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"1 of 2 inputs failed \(first: .*broken\.png"):
        segkit.predict(onnx_models["int8"], [inputs], out, engine="ray")
    summary = json.loads((out / SUMMARY_FILE).read_text())
    statuses = {Path(f["input"]).name: f["status"] for f in summary["files"]}
    assert statuses == {"172.png": "done", "broken.png": "failed"}
    assert (out / "172_mask.png").is_file() and not (out / "broken_mask.png").exists()


def test_without_ray_one_line_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if missing
    args = ["predict", "--model", MODEL, str(SAMPLE / "images"), "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, [*args, "--engine", "ray"])
    assert result.exit_code == 2
    assert (
        result.output == "segkit: error: engine 'ray' needs Ray Data: pip install 'segkit[ray]'\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_ray_options_need_the_ray_engine(tmp_path):
    args = ["predict", "--model", MODEL, str(SAMPLE / "images"), "--out", str(tmp_path)]
    for extra in (["--workers", "2"], ["--address", "auto"], ["--gpus-per-worker", "1"]):
        result = CliRunner().invoke(cli, [*args, *extra])
        assert result.exit_code == 2
        assert f"{extra[0]} is for --engine ray" in result.output


def test_a_segmenter_made_in_python_is_refused(tmp_path):
    from segkit.data import Preprocessing

    made = Segmenter(lambda batch: batch[..., :1], Preprocessing(size=(64, 64)), "made")
    with pytest.raises(ValueError, match="made in Python"):
        segkit.predict(made, [SAMPLE / "images"], tmp_path, engine="ray")


def test_the_core_never_imports_ray():
    code = (
        "import sys, segkit, segkit.cli, segkit.inference, segkit.reports, segkit.volumes, "
        "segkit.ray_engine; print('ray' in sys.modules)"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert found.stdout.strip() == "False", found.stderr
