"""Data-parallel training: each process's share of a batch, and real all-reduce on CPU devices.

JAX sees two devices with ``--xla_force_host_platform_device_count=2`` and TensorFlow with two
logical CPUs; both must be set before the engine starts, so those runs go to a subprocess.
Two replicas must end with the weights of one device on the same global batch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from segkit import data, distribute
from segkit.cli import cli
from segkit.demo import sample_dir
from segkit.runs import TrainConfig

SAME_WEIGHTS = 1e-5  # measured: within 3e-8 (float32 summation order)

# What the subprocesses share: four bundled slices to train on, two to validate on, trained
# as one global batch of four (one step per epoch, two images per replica).
COMMON = """
import json, shutil, sys
from pathlib import Path
import numpy as np
from segkit import data, training
from segkit.demo import sample_dir
from segkit.runs import RunFolder

out = Path(sys.argv[1])
split = out / "split.json"
keys = [s.key for s in data.find_samples(sample_dir())]
if not split.exists():
    data.Split(method="random", seed=0, fractions=(0.6, 0.4, 0.0), train=tuple(keys[:4]),
               val=tuple(keys[4:]), test=()).save(split)
TINY = dict(image_size=(32, 32), batch_size=4, workers=1, epochs=1, manifest=str(split),
            cache=str(out / "cache"), model_config={"base_filters": 4, "depth": 2, "dropout": 0})

def train(name, model="unet", **settings):
    model = training.train(model, sample_dir(), out / name, quiet=True, **{**TINY, **settings})
    np.savez(out / f"{name}.npz", *model.get_weights())

def save_last(name):
    np.savez(out / f"{name}.npz", *RunFolder(out / name).load_last().get_weights())
"""

JAX_RUNS = (
    COMMON
    + """
from segkit.cli import cli

train("dice-1", devices=1)
args = ["train", "--data", sample_dir(), "--out", out / "dice-2", "--manifest", split,
        "--cache", out / "cache", "--image-size", 32, "--batch-size", 4, "--workers", 1,
        "--epochs", 1, "--devices", 2, "--quiet"]
args += ["--model-config", "base_filters=4", "--model-config", "depth=2",
         "--model-config", "dropout=0"]
cli.main([str(a) for a in args], standalone_mode=False)
save_last("dice-2")
for devices in (1, 2):  # an interrupted run goes on, on one device or two
    shutil.copytree(out / f"dice-{devices}", out / f"resumed-{devices}")
    training.resume(out / f"resumed-{devices}", epochs=2, quiet=True, devices=devices)
    save_last(f"resumed-{devices}")
for devices in (1, 2):  # fast_unet has batch norm, whose statistics precise_bn recomputes
    train(f"averaged-{devices}", "fast_unet", devices=devices, epochs=2, ema=0.5, precise_bn=1)
"""
)

TF_RUNS = (
    """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""
    + COMMON
    + """
train("per-image-1", devices=1, loss_args={"per_image": True})
train("per-image-2", devices=2, loss_args={"per_image": True})
try:
    train("dice-2", devices=2)
except ValueError as exc:
    (out / "refused.txt").write_text(str(exc))
"""
)

PROCESS_RUN = (
    COMMON
    + """
port, process = sys.argv[2], int(sys.argv[3])
model = training.train("unet", sample_dir(), out / "two-processes", quiet=True,
                       coordinator=f"127.0.0.1:{port}", num_processes=2, process_id=process,
                       **TINY)
np.savez(out / f"process-{process}.npz", *model.get_weights())
"""
)


def _start(code: str, *args, backend: str, **env) -> subprocess.Popen:
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen, timeout: float) -> None:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"still running after {timeout} s:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]


def _max_difference(first, second) -> float:
    a, b = np.load(first), np.load(second)
    assert len(a.files) == len(b.files)
    return max(float(np.abs(a[key] - b[key]).max()) for key in a.files)


@pytest.fixture(scope="module")
def jax_runs(tmp_path_factory):
    """Runs on one and on two JAX CPU devices (one process; see `JAX_RUNS`)."""
    out = tmp_path_factory.mktemp("jax")
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"
    _finish(_start(JAX_RUNS, out, backend="jax", XLA_FLAGS=flags), timeout=400)
    return out


@pytest.mark.slow
def test_two_jax_devices_train_like_one(jax_runs):
    # With a pooled Dice loss, the case MirroredStrategy gets wrong: JAX computes the loss on
    # the global batch whatever its sharding (a per-image loss is a plain mean of that).
    assert _max_difference(jax_runs / "dice-1.npz", jax_runs / "dice-2.npz") < SAME_WEIGHTS


@pytest.mark.slow
def test_cli_run_folder_records_two_devices(jax_runs):
    record = json.loads((jax_runs / "dice-2" / "config.json").read_text())
    assert record["trained_on"] == {"replicas": 2, "processes": 1}
    assert record["config"]["devices"] == 2


@pytest.mark.slow
def test_moving_average_and_precise_batch_norm_train_alike_on_two_jax_devices(jax_runs):
    record = json.loads((jax_runs / "averaged-2" / "config.json").read_text())
    assert record["trained_on"] == {"replicas": 2, "processes": 1}
    # The averaged weights and the recomputed batch-norm statistics are in the saved arrays.
    assert _max_difference(jax_runs / "averaged-1.npz", jax_runs / "averaged-2.npz") < SAME_WEIGHTS


@pytest.mark.slow
def test_interrupted_distributed_run_resumes(jax_runs):
    for devices in (1, 2):
        log = (jax_runs / f"resumed-{devices}" / "log.csv").read_text().splitlines()
        assert len(log) == 3  # header and two epochs
    assert _max_difference(jax_runs / "resumed-1.npz", jax_runs / "resumed-2.npz") < SAME_WEIGHTS


@pytest.mark.slow
def test_two_jax_processes_train_like_one_device(jax_runs, tmp_path):
    (tmp_path / "split.json").write_bytes((jax_runs / "split.json").read_bytes())
    with socket.socket() as probe:  # a free port on the loopback interface
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    processes = [_start(PROCESS_RUN, tmp_path, port, i, backend="jax") for i in (0, 1)]
    try:
        for process in processes:
            _finish(process, timeout=300)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for i in (0, 1):
        assert _max_difference(jax_runs / "dice-1.npz", tmp_path / f"process-{i}.npz") < (
            SAME_WEIGHTS
        )
    record = json.loads((tmp_path / "two-processes" / "config.json").read_text())
    assert record["trained_on"] == {"replicas": 2, "processes": 2}
    assert (tmp_path / "two-processes" / "last.keras").exists()


@pytest.mark.slow
def test_mirrored_strategy_trains_like_one_device_and_refuses_pooled_losses(tmp_path):
    _finish(_start(TF_RUNS, tmp_path, backend="tensorflow"), timeout=300)
    assert _max_difference(tmp_path / "per-image-1.npz", tmp_path / "per-image-2.npz") < (
        SAME_WEIGHTS
    )
    assert "per_image=true" in (tmp_path / "refused.txt").read_text()
    assert not (tmp_path / "dice-2" / "last.keras").exists()


@pytest.mark.parametrize(
    ("backend", "call", "message"),
    [
        ("torch", "place(devices=2)", "trains on one device only on torch"),
        ("tensorflow", "place(coordinator='127.0.0.1:1')", "several hosts train only on jax"),
    ],
)
def test_what_the_engines_cannot_do_is_refused_with_what_to_use_instead(backend, call, message):
    process = _start(f"from segkit import distribute; distribute.{call}", backend=backend)
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0
    assert message in output and "KERAS_BACKEND=jax" in output


@pytest.mark.backend
def test_one_device_changes_nothing_and_more_than_there_are_is_refused():
    placement = distribute.place(devices=1)
    assert (placement.replicas, placement.process_count, placement.is_chief) == (1, 1, True)
    if keras.backend.backend() == "torch":
        message = "trains on one device only"
    else:
        message = "this process sees"
    with pytest.raises(ValueError, match=message):
        distribute.place(devices=len(distribute.local_devices()) + 1)


@pytest.mark.backend
def test_pooled_losses_are_refused_only_under_mirrored_strategy():
    from segkit import losses

    mirrored = distribute.Placement("tensorflow", replicas=2)
    shape = (None, 8, 8, 1)
    for name in ("dice", "bce_dice", "tversky"):
        with pytest.raises(ValueError, match="pools its images"):
            distribute.check_loss(mirrored, losses.get(name, mode="binary"), shape)
        per_image = losses.get(name, mode="binary", per_image=True)
        distribute.check_loss(mirrored, per_image, shape)
    distribute.check_loss(mirrored, losses.get("focal", mode="binary"), shape)
    jax_two_devices = distribute.Placement("jax", replicas=2)
    distribute.check_loss(jax_two_devices, losses.get("dice", mode="binary"), shape)


def _batches(replicas: int, processes: int, **settings) -> list[list[np.ndarray]]:
    """Every batch of the bundled sample, joined from the processes' shares."""
    samples = data.find_samples(sample_dir())
    prep = data.Preprocessing(size=(32, 32))
    shares = [
        data.SegmentationDataset(
            samples,
            prep,
            batch_size=4,
            augment=data.Augment(),
            replicas=replicas,
            process=(i, processes),
            **settings,
        )
        for i in range(processes)
    ]
    assert len({len(share) for share in shares}) == 1  # every process runs as many steps
    return [np.concatenate([share[b][0] for share in shares]) for b in range(len(shares[0]))]


def test_processes_read_their_shares_of_the_global_batch():
    whole = _batches(replicas=1, processes=1)
    joined = _batches(replicas=2, processes=2)
    assert [len(b) for b in whole] == [4, 2] and [len(b) for b in joined] == [4, 2]
    for one, shared in zip(whole, joined, strict=True):
        np.testing.assert_array_equal(one, shared)  # the same images and augmentation draws


def test_last_batch_is_cut_to_a_multiple_of_the_replicas():
    samples = data.find_samples(sample_dir())
    prep = data.Preprocessing(size=(32, 32))
    four = data.SegmentationDataset(samples, prep, batch_size=4, replicas=4)
    assert len(four) == 1  # 6 = 4 + 2: the last two cannot go to four replicas: left out
    five = data.SegmentationDataset(samples[:5], prep, batch_size=4, replicas=2)
    assert [len(five[i][0]) for i in range(len(five))] == [4]
    with pytest.raises(
        ValueError, match="--batch-size 3 must be a multiple of the number of replicas"
    ):
        data.SegmentationDataset(samples, prep, batch_size=3, replicas=2)


def test_devices_setting_is_all_or_a_count():
    config = TrainConfig(data="d", devices="2")
    config.check()
    assert config.devices == 2
    TrainConfig(data="d", devices="all").check()
    for bad in ("0", "some", -1):
        with pytest.raises(ValueError, match="devices must be all or a count"):
            TrainConfig(data="d", devices=bad).check()


def test_resume_may_move_a_run_to_other_devices_but_not_change_it(tmp_path):
    moved = CliRunner().invoke(cli, ["--debug", "train", "--resume", tmp_path, "--devices", "2"])
    assert isinstance(moved.exception, FileNotFoundError)  # got past the option check
    changed = CliRunner().invoke(cli, ["--debug", "train", "--resume", tmp_path, "--lr", "1"])
    assert isinstance(changed.exception, ValueError) and "--lr" in str(changed.exception)
