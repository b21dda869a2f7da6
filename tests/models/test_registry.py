"""The registry: names, wildcards, errors and third-party plugins through entry points."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import segkit
from segkit.models import _registry


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in a test vanish after it."""
    monkeypatch.setattr(_registry._builders, "entries", dict(_registry._builders.entries))


def test_builtin_models_are_listed():
    assert {"unet", "resunet"} <= set(segkit.models.list())
    assert segkit.models.list("res*") == ["resunet"]
    assert segkit.models.list("nothing*") == []


def test_descriptions_are_one_line():
    for name in ("unet", "resunet"):
        description = segkit.models.describe(name)
        assert description and "\n" not in description


def test_register_a_builder_in_process(scratch_registry):
    @segkit.models.register("tiny_test_net")
    def tiny(**config):
        """A stand-in."""
        return config

    assert "tiny_test_net" in segkit.models.list()
    assert segkit.models.get("tiny_test_net", a=1) == {"a": 1}


def test_duplicate_name_is_a_clear_error(scratch_registry):
    with pytest.raises(ValueError, match="'unet' is already registered by segkit.models.unet"):

        @segkit.models.register("unet")
        def other_unet():
            """Another."""


def test_unknown_name_suggests_close_matches():
    with pytest.raises(KeyError, match="Did you mean 'resunet'"):
        segkit.models.get("resnet")


def test_unknown_weights_tag_lists_what_exists():
    with pytest.raises(KeyError, match="no weights 'imagenet' for model 'unet'"):
        segkit.models.get("unet", weights="imagenet")


def test_name_tag_and_weights_must_agree():
    with pytest.raises(ValueError, match="conflicting weights tags"):
        segkit.models.get("unet.figshare", weights="other")


PLUGIN_SETUP = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.0.1"

[project.entry-points."segkit.models"]
{entry}
"""


def _install_plugin(tmp_path, name: str, module_source: str, entry: str):
    """pip-install a one-module package declaring a segkit.models entry point into a folder."""
    source = tmp_path / name
    source.mkdir()
    (source / "pyproject.toml").write_text(PLUGIN_SETUP.format(name=name, entry=entry))
    (source / f"{name}.py").write_text(textwrap.dedent(module_source))
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
    )
    return target


def _list_models_with(site, tmp_path) -> subprocess.CompletedProcess:
    code = "import warnings, segkit; warnings.simplefilter('always'); print(segkit.models.list())"
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    import os

    env["KERAS_BACKEND"] = os.environ.get("KERAS_BACKEND", "tensorflow")
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )


def test_installed_plugin_package_adds_its_model(tmp_path):
    site = _install_plugin(
        tmp_path,
        "segkit_plugin_demo",
        '''
        def tiny_plugin_net(input_shape=(32, 32, 1)):
            """A plugin model."""
            import keras
            inputs = keras.Input(input_shape)
            return keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
        ''',
        'tiny_plugin_net = "segkit_plugin_demo:tiny_plugin_net"',
    )
    result = _list_models_with(site, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "'tiny_plugin_net'" in result.stdout and "'unet'" in result.stdout


def test_broken_plugin_warns_and_the_rest_still_work(tmp_path):
    site = _install_plugin(
        tmp_path,
        "segkit_plugin_broken",
        "raise ImportError('missing dependency xyz')\n",
        'broken_net = "segkit_plugin_broken:builder"',
    )
    result = _list_models_with(site, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "model plugin 'broken_net'" in result.stderr
    assert "missing dependency xyz" in result.stderr
    assert "'unet'" in result.stdout and "'resunet'" in result.stdout
