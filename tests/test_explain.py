"""Saliency maps: the same on every backend, sane (Adebayo et al., 2018), and near the tumour."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy import ndimage, stats

import segkit
from segkit import data
from segkit.cli import cli
from segkit.demo import sample_dir
from segkit.explain import METHODS, _Explainer, default_layer, saliency
from segkit.inference import Segmenter, load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import saliency_reference  # noqa: E402

pytestmark = pytest.mark.backend

TINY = {"input_shape": (32, 32, 1), "base_filters": 4, "depth": 2}
SAMPLE = sample_dir()
#: Slices where resunet.figshare's region (one pass, above its threshold 0.3) lies on the tumour.
#: On 1944 a fifth of it lies elsewhere, and Grad-CAM rightly explains that part too; the model
#: finds almost nothing of 1076.
FOUND = ("172", "294", "770", "955")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An untrained tiny U-Net saved as .keras, and the folder it lies in."""
    folder = tmp_path_factory.mktemp("explain")
    keras.utils.set_random_seed(0)
    segkit.models.get("unet", **TINY).save(folder / "tiny.keras")
    return folder / "tiny.keras"


@pytest.fixture(scope="module")
def tiny_model(tiny):
    return load_model(tiny)


@pytest.fixture(scope="module")
def image():
    """A bundled slice, shrunk to a size the tiny model does not take (so maps are resized)."""
    slice_ = data.read_image(SAMPLE / "images" / "172.png", 1)
    return np.asarray(Image.fromarray(slice_[..., 0]).resize((48, 40)))[..., None]


@pytest.fixture(scope="module")
def shipped():
    return load_model(saliency_reference.MODEL)


def _slice(stem: str):
    image = data.read_image(SAMPLE / "images" / f"{stem}.png", 1)
    return image, data.read_mask_file(SAMPLE / "masks" / f"{stem}_mask.png")


# --- every method, on a tiny model -------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_a_map_at_the_images_size(tiny_model, image, method):
    found = saliency(tiny_model, image, method=method, samples=4, patch=8)
    assert found.shape == (40, 48)
    assert found.dtype == np.float32
    assert np.isfinite(found).all() and found.any()


def test_the_gradient_is_the_scores_rate_of_change():
    """Against central differences of the explained score, on a smooth network (no ReLU kinks
    for a finite step to cross)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    features = keras.layers.Conv2D(4, 3, padding="same", activation="tanh")(inputs)
    scores = keras.layers.Conv2D(1, 3, padding="same", name="head")(features)
    network = keras.Model(inputs, keras.layers.Activation("sigmoid")(scores))
    model = Segmenter(network.predict_on_batch, data.Preprocessing(size=(8, 8)), "smooth", network)
    x = np.random.default_rng(0).random((8, 8, 1)).astype(np.float32)
    weights = np.ones((8, 8, 1), np.float32)
    found = _Explainer(model, "gradient", None, 8, 0, 1, 0.0, None, None)._gradient(x, weights)
    step = 1e-2
    nudged = np.repeat(x[None], 2 * 64, axis=0)
    for pixel in range(64):
        row, col = divmod(pixel, 8)
        nudged[2 * pixel, row, col] += step
        nudged[2 * pixel + 1, row, col] -= step
    totals = network.predict_on_batch(nudged).astype(np.float64).sum(axis=(1, 2, 3))
    differences = np.abs(totals[0::2] - totals[1::2]).reshape(8, 8) / (2 * step)
    np.testing.assert_allclose(found, differences, rtol=1e-2, atol=1e-3 * differences.max())


def test_smoothgrad_is_repeatable_by_seed(tiny_model, image):
    first = saliency(tiny_model, image, method="smoothgrad", samples=3, seed=1)
    again = saliency(tiny_model, image, method="smoothgrad", samples=3, seed=1)
    other = saliency(tiny_model, image, method="smoothgrad", samples=3, seed=2)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_gradcam_reads_the_layer_asked_for(tiny_model, image):
    network = tiny_model.network
    assert default_layer(network) == "up1_relu2"
    deeper = saliency(tiny_model, image, method="gradcam", layer="up2_relu2")
    default = saliency(tiny_model, image, method="gradcam")
    assert deeper.shape == default.shape and not np.allclose(deeper, default)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("resunet", "up1_add"),
        ("attention_unet", "up1_relu2"),
        ("unet_plus_plus", "x02_relu2"),
        ("fast_unet", "up1_relu"),
    ],
)
def test_the_default_layer_feeds_the_output_head(name, expected):
    assert default_layer(segkit.models.get(name, **TINY)) == expected


def test_a_model_without_a_head_layer_falls_back_to_its_last_feature_maps():
    inputs = keras.Input((32, 32, 1))
    features = keras.layers.Conv2D(4, 3, padding="same", name="features")(inputs)
    scores = keras.layers.Conv2D(1, 1, name="scores")(features)
    outputs = keras.layers.Activation("sigmoid", name="sigmoid")(scores)
    assert default_layer(keras.Model(inputs, outputs)) == "features"


def test_a_region_and_a_class_change_what_is_explained(tmp_path):
    keras.utils.set_random_seed(0)
    network = segkit.models.get("unet", num_classes=3, **TINY)
    model = Segmenter(network.predict_on_batch, data.Preprocessing(size=(32, 32)), "3", network)
    image = (np.random.default_rng(0).random((32, 32, 1)) * 255).astype(np.uint8)
    region = np.zeros((32, 32), np.uint8)
    region[:8, :8] = 1
    Image.fromarray(region * 255).save(tmp_path / "region.png")
    maps = {
        "predicted": saliency(model, image),
        "class 2": saliency(model, image, target=2),
        "region": saliency(model, image, target=region),
    }
    assert not np.allclose(maps["predicted"], maps["class 2"])
    assert not np.allclose(maps["predicted"], maps["region"])
    from_file = saliency(model, image, target=tmp_path / "region.png")
    np.testing.assert_array_equal(from_file, maps["region"])
    with pytest.raises(ValueError, match="class 3 does not exist"):
        saliency(model, image, target=3)


def test_explain_writes_pictures_and_raw_maps(tiny, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    slice_ = Image.open(SAMPLE / "images" / "955.png")
    slice_.resize((40, 40)).save(images / "a.png")
    slice_.resize((48, 32)).save(images / "b.png")
    written = segkit.explain(tiny, [images], tmp_path / "out", method="gradcam", raw=True)
    assert [p.name for p in written] == [
        "a_saliency.png",
        "a_saliency.npy",
        "b_saliency.png",
        "b_saliency.npy",
    ]
    raw = np.load(tmp_path / "out" / "b_saliency.npy")
    assert raw.dtype == np.float32 and raw.shape == (32, 48)
    picture = np.asarray(Image.open(tmp_path / "out" / "a_saliency.png"))
    assert picture.ndim == 3 and picture.shape[0] > 100  # a figure with a colour bar
    # Once the module is imported, segkit.explain is the module; it still calls explain.
    importlib.import_module("segkit.explain")
    assert segkit.explain(tiny, [images / "a.png"], tmp_path / "again") == [
        tmp_path / "again" / "a_saliency.png"
    ]


def test_the_explained_region_follows_the_threshold_and_the_defaults(tiny_model, tmp_path):
    # A model whose stored defaults say 0.3, as resunet.figshare's do (chosen with TTA).
    tuned = tiny_model.with_settings(threshold=0.3, tta="flips")
    slice_ = SAMPLE / "images" / "955.png"
    image = data.read_image(slice_, 1)

    def explained(folder, **options):
        segkit.explain(tuned, [slice_], tmp_path / folder, raw=True, **options)
        return np.load(tmp_path / folder / "955_saliency.npy")

    at = {t: saliency(tiny_model.with_settings(threshold=t), image) for t in (0.3, 0.5, 0.45)}
    assert not np.allclose(at[0.3], at[0.5])  # the untrained model's regions differ
    np.testing.assert_allclose(explained("stored"), at[0.3], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(explained("own", defaults=False), at[0.5], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(explained("given", threshold=0.45), at[0.45], rtol=1e-5, atol=1e-7)


def test_the_command_line_explains_and_names_bad_input(tiny, tmp_path):
    runner = CliRunner()
    images = str(SAMPLE / "images" / "955.png")
    result = runner.invoke(
        cli,
        [
            "explain",
            "--model",
            str(tiny),
            "--out",
            str(tmp_path),
            "--raw",
            images,
            "--method",
            "occlusion",
            "--class",
            "1",
            "--no-defaults",
            "--threshold",
            "0.4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1 saliency map written" in result.output
    assert np.load(tmp_path / "955_saliency.npy").shape == (256, 256)
    result = runner.invoke(
        cli,
        [
            "explain",
            "--model",
            str(tiny),
            "--out",
            str(tmp_path),
            images,
            "--layer",
            "nope",
            "--method",
            "gradcam",
        ],
    )
    assert result.exit_code == 2
    assert "no layer 'nope'" in result.output and "up1_relu2" in result.output


# --- bad input ---------------------------------------------------------------------------------


def test_an_unknown_method_is_named(tiny_model, image):
    with pytest.raises(ValueError, match="unknown method 'lime'; choose one of gradient"):
        saliency(tiny_model, image, method="lime")


def test_a_missing_layer_lists_layers_near_the_output(tiny_model, image):
    with pytest.raises(
        ValueError, match=r"no layer 'decoder' in .*near the output: .*up1_relu2, head"
    ):
        saliency(tiny_model, image, method="gradcam", layer="decoder")


def test_a_layer_is_for_gradcam_only(tiny_model, image):
    with pytest.raises(ValueError, match="--layer applies to --method gradcam only"):
        saliency(tiny_model, image, method="gradient", layer="up1_relu2")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (2, "class 2 does not exist: a one-channel model explains class 1"),
        (np.ones((8, 8)), r"the target region is \(8, 8\), but the image is \(40, 48\)"),
    ],
)
def test_a_target_that_does_not_fit_is_named(tiny_model, image, target, message):
    with pytest.raises(ValueError, match=message):
        saliency(tiny_model, image, target=target)


@pytest.fixture(scope="module")
def tiny_onnx(tiny, backend):
    """The tiny model as ONNX; on JAX, which cannot export, exported by a TensorFlow process."""
    path = tiny.with_suffix(".onnx")
    if backend != "jax":
        return segkit.export(tiny, path)
    command = [sys.executable, "-m", "segkit.cli", "export", "--model", str(tiny), "--out", path]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    subprocess.run([str(c) for c in command], check=True, env=env, capture_output=True)
    return path


def test_occlusion_explains_onnx_models_as_it_does_keras_ones(tiny_model, tiny_onnx, image):
    onnx_model = load_model(tiny_onnx)
    assert onnx_model.network is None
    with_onnx = saliency(onnx_model, image, method="occlusion", patch=8)
    with_keras = saliency(tiny_model, image, method="occlusion", patch=8)
    np.testing.assert_allclose(with_onnx, with_keras, atol=1e-4 * np.abs(with_keras).max())


@pytest.mark.parametrize("method", ["gradient", "smoothgrad", "gradcam"])
def test_gradient_methods_on_onnx_say_to_use_occlusion(tiny_onnx, image, method):
    with pytest.raises(ValueError, match="use --method occlusion"):
        saliency(load_model(tiny_onnx), image, method=method)


# --- the shipped weights -----------------------------------------------------------------------


@pytest.mark.slow
def test_maps_agree_with_the_tensorflow_reference():
    """The maps recorded on TensorFlow by ``tools/saliency_reference.py``, on this backend.

    Tolerance: every pixel (of the 4x4-block averaged maps) within 0.1% of the map's largest
    value; backends differ in float round-off only.
    """
    reference = np.load(saliency_reference.TARGET)
    sha256 = segkit.weights.PRETRAINED[segkit.models.split_name(saliency_reference.MODEL)].sha256
    assert str(reference["sha256"]) == sha256, (
        "the shipped weights changed since the maps were recorded: run tools/saliency_reference.py"
    )
    for method, found in saliency_reference.reference_maps().items():
        expected = reference[f"{method}.map"]
        scale = np.abs(expected).max()
        assert scale > 0
        np.testing.assert_allclose(found, expected, rtol=0, atol=1e-3 * scale, err_msg=method)


def _random_network():
    """The shipped architecture with fresh weights drawn by numpy, so the same on every backend:
    Glorot-uniform kernels (Keras' default), the builder's own biases and batch-norm values."""
    rng = np.random.default_rng(0)
    network = segkit.models.get("resunet")
    drawn = []
    for weight in network.get_weights():
        if weight.ndim == 4:  # (kernel height, kernel width, in, out)
            receptive = weight.shape[0] * weight.shape[1]
            limit = np.sqrt(6 / (receptive * (weight.shape[2] + weight.shape[3])))
            weight = rng.uniform(-limit, limit, weight.shape).astype(np.float32)
        drawn.append(weight)
    network.set_weights(drawn)
    return network


@pytest.mark.slow
def test_maps_of_trained_and_random_weights_differ(shipped):
    """Adebayo et al.'s model randomisation test: a map that barely changes when the weights are
    random does not explain what the model learnt. Both models explain the same region, the
    true tumour. Spearman rho measured (the same on every backend): Grad-CAM -0.09 (slice 294)
    and -0.19 (172), occlusion -0.51 (172). The plain gradient and SmoothGrad fail this test
    (0.94 to 0.97): they mostly trace the region through the receptive field; see the
    tutorial."""
    network = _random_network()
    random = Segmenter(network.predict_on_batch, shipped.prep, "random resunet", network)
    cases = [("294", "gradcam", {}), ("172", "gradcam", {})]
    cases.append(("172", "occlusion", {"patch": 64, "stride": 64}))
    for stem, method, options in cases:
        image, true = _slice(stem)
        trained_map = saliency(shipped, image, method=method, target=true, **options)
        random_map = saliency(random, image, method=method, target=true, **options)
        rho = stats.spearmanr(trained_map.ravel(), random_map.ravel()).statistic
        assert rho < 0.3, (stem, method, rho)


@pytest.mark.slow
def test_saliency_concentrates_near_the_tumour(shipped):
    """Mean saliency inside the true mask dilated by 4% of the image's width, over the mean
    outside it. Measured (TensorFlow), per slice of FOUND: gradient 27.1, 47.8, 7.5, 31.2;
    Grad-CAM puts at least 99.7% of its mass inside on every one."""
    for stem in FOUND:
        image, true = _slice(stem)
        near = ndimage.binary_dilation(true, iterations=round(0.04 * true.shape[1]))
        gradient = saliency(shipped, image, method="gradient")
        assert gradient[near].mean() / gradient[~near].mean() > 4, stem
        gradcam = saliency(shipped, image, method="gradcam")
        assert gradcam[near].sum() / gradcam.sum() > 0.95, stem
