"""What the backend and the CPU can run: NCHW convolutions, native bfloat16."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from segkit import backend

# /proc/cpuinfo excerpts: an AVX2-only AMD EPYC, a Sapphire Rapids Xeon, an Arm Neoverse V1.
AVX2_ONLY = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx fma avx2\n\n"
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
NEOVERSE_V1 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.fixture
def cpuinfo(tmp_path, monkeypatch):
    """``cpuinfo(text)``: make segkit read ``text`` as /proc/cpuinfo, on a CPU-only backend
    with TensorFlow's oneDNN left on."""
    monkeypatch.setattr(backend, "gpu_in_use", lambda: False)
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)

    def use(text: str | None) -> None:
        path = tmp_path / "cpuinfo" if text is not None else tmp_path / "absent"
        if text is not None:
            path.write_text(text)
        monkeypatch.setattr(backend, "CPUINFO", path)

    return use


@pytest.mark.backend
def test_channels_first_supported_says_whether_nchw_convolutions_run():
    convolution = keras.layers.Conv2D(2, 3, data_format="channels_first")
    images = np.ones((1, 1, 8, 8), np.float32)
    if backend.channels_first_supported():
        assert keras.ops.convert_to_numpy(convolution(images)).shape == (1, 2, 6, 6)
    else:
        assert keras.backend.backend() == "tensorflow" and not backend.gpu_in_use()
        with pytest.raises(Exception, match="NHWC"):
            convolution(images)


@pytest.mark.backend
def test_channels_first_supported_probes_once_per_process():
    backend.channels_first_supported()
    backend.channels_first_supported()
    assert backend.channels_first_supported.cache_info().currsize == 1


def test_cpu_features_read_the_flags_line(cpuinfo):
    cpuinfo(AVX2_ONLY)
    assert backend.cpu_features() == {"fpu", "sse2", "avx", "fma", "avx2"}
    cpuinfo(NEOVERSE_V1)
    assert "bf16" in backend.cpu_features()
    cpuinfo(None)  # no /proc/cpuinfo: macOS, Windows
    assert backend.cpu_features() == frozenset()


@pytest.mark.parametrize(
    ("text", "native"),
    [(AVX2_ONLY, False), (SAPPHIRE_RAPIDS, True), (NEOVERSE_V1, True), ("", False)],
)
def test_native_bfloat16_needs_bf16_units(cpuinfo, text, native):
    cpuinfo(text)
    assert backend.native_bfloat16() is native


def test_native_bfloat16_on_any_gpu(cpuinfo, monkeypatch):
    cpuinfo(AVX2_ONLY)
    monkeypatch.setattr(backend, "gpu_in_use", lambda: True)
    assert backend.native_bfloat16()


def test_check_precision_warns_about_emulated_bfloat16(cpuinfo):
    cpuinfo(AVX2_ONLY)
    with pytest.warns(UserWarning, match="mixed_bfloat16 is emulated here .the CPU's") as record:
        backend.check_precision("mixed_bfloat16")
    assert len(record) == 1 and "\n" not in str(record[0].message)


@pytest.mark.backend
def test_tensorflow_without_onednn_emulates_bfloat16_on_any_cpu(cpuinfo, monkeypatch):
    cpuinfo(SAPPHIRE_RAPIDS)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    on_tensorflow = keras.backend.backend() == "tensorflow"
    assert backend.native_bfloat16() is not on_tensorflow
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        backend.check_precision("mixed_bfloat16")
    if on_tensorflow:
        assert len(record) == 1 and "TF_ENABLE_ONEDNN_OPTS=0 turns off" in str(record[0].message)
    else:
        assert not record


def test_check_precision_warns_about_float16_on_cpu(cpuinfo):
    cpuinfo(SAPPHIRE_RAPIDS)
    with pytest.warns(UserWarning, match="mixed_float16 is meant for GPUs") as record:
        backend.check_precision("mixed_float16")
    assert len(record) == 1 and "\n" not in str(record[0].message)


@pytest.mark.parametrize(
    ("text", "precision", "gpu"),
    [
        (SAPPHIRE_RAPIDS, "mixed_bfloat16", False),
        (AVX2_ONLY, "float32", False),
        (AVX2_ONLY, "mixed_float16", True),
        (AVX2_ONLY, "mixed_bfloat16", True),
    ],
)
def test_check_precision_is_silent_where_it_runs_at_speed(
    cpuinfo, monkeypatch, text, precision, gpu
):
    cpuinfo(text)
    monkeypatch.setattr(backend, "gpu_in_use", lambda: gpu)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backend.check_precision(precision)
