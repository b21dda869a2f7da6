"""Encoders: the registry, the strides each one claims (read from shapes), any encoder under
any decoder in 2-D and 3-D, and keras.applications backbones with local weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import segkit
from segkit.encoders import UnsupportedSpatialDims, applications
from segkit.encoders.applications import ImagenetOffline

DECODERS = ["unet", "resunet", "fast_unet", "attention_unet", "unet_plus_plus"]
#: The cheapest keras.applications family, for tests that need a real backbone.
SMALL_BACKBONE = "mobilenetv3small"


def test_registry_lists_segkit_and_keras_applications_encoders():
    names = segkit.encoders.list()
    for name in (
        "unet",
        "resunet",
        "fast_unet",
        "resnet50",
        "resnet50v2",
        "efficientnetb7",
        "efficientnetv2s",
        "convnext_tiny",
        "mobilenetv3large",
        "densenet121",
    ):
        assert name in names
    assert segkit.encoders.list("resnet*v2") == ["resnet101v2", "resnet152v2", "resnet50v2"]
    assert segkit.encoders.supports_3d("unet") and not segkit.encoders.supports_3d("resnet50")


def test_unknown_encoder_suggests_close_names():
    with pytest.raises(KeyError, match="Did you mean 'resnet50'"):
        segkit.encoders.get("resnet5O")
    with pytest.raises(KeyError, match="unknown encoder 'resnet5O'"):
        segkit.models.get("unet", encoder="resnet5O")


@pytest.mark.parametrize(
    ("name", "options", "strides", "channels"),
    [
        ("unet", {"filters": 4, "depth": 3}, [1, 2, 4, 8], [4, 8, 16, 16]),
        ("resunet", {"filters": 4, "depth": 2}, [1, 2, 4], [4, 8, 16]),
        ("fast_unet", {"filters": 4, "depth": 3}, [2, 4, 8], [4, 8, 16]),
    ],
)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_segkit_encoders_give_the_strides_they_claim(
    name, options, strides, channels, spatial_dims
):
    encoder = segkit.encoders.get(name, spatial_dims=spatial_dims, **options)
    features = encoder(keras.Input((16,) * spatial_dims + (1,)))
    assert features.strides == strides
    assert features.channels("channels_last") == channels
    for stride, tensor in features.maps.items():
        assert tuple(tensor.shape[1:-1]) == (16 // stride,) * spatial_dims


def test_strides_are_read_from_shapes_even_for_unknown_sizes():
    encoder = segkit.encoders.get("fast_unet", filters=4, depth=3)
    assert encoder(keras.Input((None, None, 1))).strides == [2, 4, 8]


def test_a_2d_only_encoder_asked_for_3d_is_a_clear_error():
    with pytest.raises(UnsupportedSpatialDims, match="'resnet50' builds in 2-D only, not in 3-D"):
        segkit.models.get("unet", encoder="resnet50", spatial_dims=3, input_shape=(16, 16, 16, 1))


def test_3d_input_shape_must_have_a_depth_axis():
    with pytest.raises(ValueError, match=r"\(depth, height, width, channels\)"):
        segkit.models.get("unet", spatial_dims=3, input_shape=(64, 64, 1))


def _train_one_step(model, shape):
    rng = np.random.default_rng(0)
    x = rng.random((2, *shape), dtype=np.float32)
    y = (rng.random((2, *shape[:-1], 1)) > 0.5).astype(np.float32)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    before = [np.array(v) for v in model.trainable_weights]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    after = [np.array(v) for v in model.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.backend
@pytest.mark.parametrize("name", DECODERS)
def test_every_decoder_builds_and_trains_in_3d(name):
    shape = (8, 8, 8, 1)
    model = segkit.models.get(name, spatial_dims=3, input_shape=shape, base_filters=2, depth=2)
    assert model.output.shape == (None, 8, 8, 8, 1)
    _train_one_step(model, shape)


@pytest.mark.backend
@pytest.mark.parametrize("name", ["unet", "fast_unet", "unet_plus_plus"])
def test_decoders_over_a_segkit_encoder_of_another_architecture(name):
    model = segkit.models.get(name, encoder="fast_unet", input_shape=(16, 16, 1), depth=2)
    assert model.output.shape == (None, 16, 16, 1)
    _train_one_step(model, (16, 16, 1))


def test_3d_bilinear_upsampling_keeps_a_linear_ramp_linear():
    # Trilinear interpolation of a ramp along depth is a ramp (half-pixel centres, clamped).
    ramp = np.arange(4, dtype=np.float32).reshape(1, 4, 1, 1, 1) * np.ones((1, 4, 2, 2, 1))
    layer = segkit.encoders._layers.TrilinearUpsampling3D(2)
    out = keras.ops.convert_to_numpy(layer(ramp.astype(np.float32)))
    assert out.shape == (1, 8, 4, 4, 1)
    expected = np.clip((np.arange(8) - 0.5) / 2, 0, 3)
    np.testing.assert_allclose(out[0, :, 0, 0, 0], expected, atol=1e-6)


@pytest.mark.backend
def test_unet_over_a_keras_applications_backbone_trains_one_step():
    model = segkit.models.get("unet", encoder=SMALL_BACKBONE, input_shape=(32, 32, 1), depth=5)
    channels_first = model.get_layer("input_channels").data_format == "channels_first"
    sizes = [out.shape[2 if channels_first else 1] for out in model.get_layer("encoder").outputs]
    assert sizes == [16, 8, 4, 2, 1]  # strides 2 to 32 on a 32x32 input
    assert model.segkit_normalize == "divide255"
    _train_one_step(model, (32, 32, 1))


def test_imagenet_offline_is_one_line_naming_the_local_file_option(monkeypatch):
    monkeypatch.setattr(applications, "online", lambda: False)
    with pytest.raises(ImagenetOffline) as raised:
        segkit.models.get(
            "unet", encoder=SMALL_BACKBONE, encoder_weights="imagenet", input_shape=(32, 32, 1)
        )
    message = str(raised.value)
    assert "\n" not in message and "encoder_weights=PATH" in message


def test_offline_detection_does_not_hang():
    # A port nothing listens on: refused at once, or given up after the timeout.
    assert applications.online(("127.0.0.1", 9), timeout=1.0) is False


@pytest.fixture(scope="module")
def backbone_weights(tmp_path_factory):
    """A weights file of the small backbone (random, as Keras would save it)."""
    keras.utils.set_random_seed(3)
    network = keras.applications.MobileNetV3Small(
        include_top=False, weights=None, input_shape=(None, None, 3), include_preprocessing=False
    )
    path = tmp_path_factory.mktemp("weights") / "mobilenetv3small.weights.h5"
    network.save_weights(path)
    return path, [np.array(v) for v in network.weights]


def test_local_weights_file_loads_into_the_encoder(backbone_weights):
    path, saved = backbone_weights
    model = segkit.models.get(
        "unet",
        encoder=SMALL_BACKBONE,
        encoder_weights=str(path),
        input_shape=(32, 32, 3),
        depth=5,
        data_format="channels_last",
    )
    loaded = [np.array(v) for v in model.get_layer("encoder").weights]
    assert len(loaded) == len(saved)
    for got, want in zip(loaded, saved, strict=True):
        np.testing.assert_array_equal(got, want)


def test_weights_file_of_another_architecture_is_one_line(backbone_weights):
    path, _ = backbone_weights
    with pytest.raises(ValueError, match="does not fit 'mobilenetv3large'") as raised:
        segkit.models.get(
            "unet",
            encoder="mobilenetv3large",
            encoder_weights=str(path),
            input_shape=(32, 32, 1),
            depth=5,
        )
    assert "\n" not in str(raised.value)


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.weights.h5"):
        segkit.models.get(
            "unet", encoder=SMALL_BACKBONE, encoder_weights=str(tmp_path / "nowhere.weights.h5")
        )


def test_one_channel_stem_computes_what_a_grey_rgb_image_gives(backbone_weights):
    # The adapter is SMP's set_in_channels: one channel = the stem's kernel summed = the same
    # grey value in all three channels.
    path, _ = backbone_weights
    grey = segkit.encoders.get(SMALL_BACKBONE, input_channels=1, weights=str(path))
    rgb = segkit.encoders.get(SMALL_BACKBONE, input_channels=3, weights=str(path))
    x1, x3 = keras.Input((32, 32, 1)), keras.Input((32, 32, 3))
    grey_model = keras.Model(x1, grey(x1).maps[32])
    rgb_model = keras.Model(x3, rgb(x3).maps[32])
    image = np.random.default_rng(0).random((1, 32, 32, 1), dtype=np.float32)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(grey_model(image)),
        keras.ops.convert_to_numpy(rgb_model(np.repeat(image, 3, axis=-1))),
        rtol=1e-4,
        atol=1e-4,
    )


def test_channel_adapter_kernel_matches_set_in_channels():
    np.testing.assert_array_equal(applications.channel_adapter_kernel(1)[0, 0], [[1, 1, 1]])
    four = applications.channel_adapter_kernel(4)[0, 0]
    np.testing.assert_allclose(four, [[0.75, 0, 0], [0, 0.75, 0], [0, 0, 0.75], [0.75, 0, 0]])


@pytest.mark.backend
def test_model_over_a_backbone_round_trips_through_a_keras_file(tmp_path):
    model = segkit.models.get("fast_unet", encoder=SMALL_BACKBONE, input_shape=(32, 32, 1), depth=5)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    image = np.random.default_rng(1).random((1, 32, 32, 1), dtype=np.float32)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(image)),
        keras.ops.convert_to_numpy(loaded(image)),
        atol=1e-6,
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(applications.FAMILIES))
def test_every_keras_applications_family_gives_strides_2_to_32(name):
    encoder = segkit.encoders.get(name, input_channels=1, data_format="channels_last")
    features = encoder(keras.Input((64, 64, 1)))
    expected = [4, 8, 16, 32] if name.startswith("convnext") else [2, 4, 8, 16, 32]
    assert features.strides == expected


def _cli(*args):
    from click.testing import CliRunner

    from segkit.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_cli_lists_encoders_with_3d_support_and_offline_weights():
    result = _cli("encoders", "*unet")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == ["fast_unet", "resunet", "unet"]
    assert all("2-D, 3-D" in line and "none (random)" in line for line in lines)
    details = _cli("encoders", "fast_unet", "--details")
    assert "strides/channels 2:24 4:48 8:96 16:192 32:384" in details.output
    assert "imagenet when online" in _cli("encoders", "resnet50").output


def test_cli_encoders_pattern_without_a_match_is_one_line():
    result = _cli("encoders", "nothing*")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--encoder", "resnet5O"], "Did you mean 'resnet50'"),
        (
            ["--encoder", SMALL_BACKBONE, "--encoder-weights", "missing.weights.h5"],
            "missing.weights.h5",
        ),
    ],
)
def test_cli_train_with_a_bad_encoder_is_one_line_and_writes_nothing(
    figshare_256, tmp_path, options, message
):
    out = tmp_path / "run"
    result = _cli(
        "train", "--data", figshare_256, "--out", out, "--model", "unet", "--epochs", "1", *options
    )
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_a_saved_header_rebuilds_without_the_starting_weights():
    from segkit.models import pretrained

    config = pretrained.full_config(
        "unet", {"encoder": "resnet50", "encoder_weights": "/gone/resnet50.weights.h5"}
    )
    assert config["encoder"] == "resnet50" and config["encoder_weights"] is None
