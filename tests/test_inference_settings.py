"""Inference settings: test-time augmentation, post-processing, the threshold, stored defaults."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy import ndimage

import segkit
from segkit import data, training
from segkit.cli import cli
from segkit.demo import sample_dir
from segkit.inference import (
    InferenceSettings,
    load_model,
    predict,
    run_defaults,
    save_run_defaults,
    stored_settings,
)
from segkit.models import pretrained
from segkit.postprocess import PostProcessing

pytestmark = pytest.mark.backend

TINY = {"input_shape": (32, 32, 1), "base_filters": 4, "depth": 2}
PREP = {"size": (32, 32), "channels": 1, "normalize": "divide255"}
TUNED = InferenceSettings(threshold=0.45, tta="flips", postprocess="largest,fill-holes")


def sample_images() -> list[np.ndarray]:
    return [data.read_image(p) for p in sorted((sample_dir() / "images").glob("*.png"))]


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    segkit.models.get("unet", **TINY).save(path)
    return path


# The 8 symmetries of the square written out one by one, each with its inverse, on (B, H, W, C)
# arrays: the test's own account of what the TTA settings average.
def _transpose(x):
    return x.transpose(0, 2, 1, 3)


SYMMETRIES = [
    (lambda x: x, lambda y: y),
    (lambda x: x[:, :, ::-1], lambda y: y[:, :, ::-1]),  # mirror left-right
    (lambda x: x[:, ::-1], lambda y: y[:, ::-1]),  # mirror up-down
    (lambda x: x[:, ::-1, ::-1], lambda y: y[:, ::-1, ::-1]),  # half turn
    (_transpose, _transpose),  # mirror in the main diagonal
    (lambda x: _transpose(x)[:, ::-1], lambda y: _transpose(y[:, ::-1])),  # quarter turn left
    (lambda x: _transpose(x)[:, :, ::-1], lambda y: _transpose(y[:, :, ::-1])),  # right
    (lambda x: _transpose(x[:, ::-1, ::-1]), lambda y: _transpose(y)[:, ::-1, ::-1]),
]


def mean_of_transformed(network, batch, symmetries):
    outputs = [
        back(network.predict_on_batch(np.ascontiguousarray(go(batch)))) for go, back in symmetries
    ]
    return np.mean(np.asarray(outputs, dtype=np.float64), axis=0)


def test_the_symmetries_are_the_eight_of_the_square():
    square = np.arange(9).reshape(1, 3, 3, 1)
    images = {go(square).tobytes() for go, _ in SYMMETRIES}
    assert len(images) == 8
    for go, back in SYMMETRIES:
        np.testing.assert_array_equal(back(go(square)), square)


@pytest.mark.parametrize("classes", [1, 3], ids=["sigmoid", "softmax"])
@pytest.mark.parametrize(("tta", "count"), [("flips", 4), ("dihedral", 8)])
def test_tta_is_the_mean_of_the_transformed_predictions(tmp_path, classes, tta, count):
    network = segkit.models.get("unet", **TINY, num_classes=classes)
    path = tmp_path / "tiny.keras"
    network.save(path)
    segmenter = load_model(path, tta=tta)
    images = sample_images()[:3]
    batch = np.stack(
        [data.normalize(data.resize_image(i, (32, 32)), segmenter.prep) for i in images]
    )
    expected = mean_of_transformed(network, batch, SYMMETRIES[:count])
    got = segmenter.predict(images)
    assert got.shape == (3, 32, 32, classes) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-6)
    # The model is not symmetric: averaging changed the probabilities (else nothing was tested).
    plain = segmenter.with_settings(tta="none").predict(images)
    assert np.abs(plain - got).max() > 1e-3
    if classes > 1:
        np.testing.assert_allclose(got.sum(axis=-1), 1.0, atol=1e-5)


def test_one_pass_per_transform_gives_every_tta_setting(keras_file):
    segmenter = load_model(keras_file)
    images = sample_images()[:2]
    shared = segmenter.predict_tta(images, ("none", "flips", "dihedral"))
    for mode in ("none", "flips", "dihedral"):
        alone = segmenter.with_settings(tta=mode).predict(images)
        np.testing.assert_allclose(shared[mode], alone, atol=1e-6)


def test_quarter_turns_need_a_square_input(tmp_path):
    path = tmp_path / "wide.keras"
    segkit.models.get("unet", input_shape=(32, 64, 1), base_filters=4, depth=2).save(path)
    image = sample_images()[0]
    assert load_model(path, tta="flips").predict([image]).shape == (1, 32, 64, 1)
    with pytest.raises(ValueError, match="needs a square input; .* takes 32x64: use --tta flips"):
        load_model(path, tta="dihedral").predict([image])


def test_predict_writes_post_processed_masks(keras_file, tmp_path):
    image = sample_dir() / "images" / "955.png"
    raw = load_model(keras_file).probabilities([image]).__next__()[2]
    threshold = float(np.quantile(raw, 0.6))  # a random model: a speckled mask of many regions
    predict(keras_file, [image], tmp_path / "raw", threshold=threshold)
    predict(keras_file, [image], tmp_path / "pp", threshold=threshold, postprocess="largest")
    before = np.asarray(Image.open(tmp_path / "raw" / "955_mask.png")) > 0
    after = np.asarray(Image.open(tmp_path / "pp" / "955_mask.png")) > 0
    _, regions_before = ndimage.label(before, structure=np.ones((3, 3)))
    _, regions_after = ndimage.label(after, structure=np.ones((3, 3)))
    assert regions_before > 1 and regions_after == 1
    assert np.all(before[after])


def test_min_size_means_pixels_at_the_models_size(keras_file):
    segmenter = load_model(keras_file, postprocess="min-size=4")
    probabilities = np.zeros((64, 64, 1), np.float32)  # twice the model's side: 4x the area
    probabilities[0:4, 0:4] = 0.9  # 16 pixels here, 4 at the model's size: kept
    probabilities[10:13, 10:13] = 0.9  # 9 pixels, fewer than 16: dropped
    mask = segmenter.to_mask(probabilities)
    assert mask[:4, :4].all() and not mask[10:13, 10:13].any()


def test_bad_settings_are_refused_before_any_work(keras_file, tmp_path):
    image = sample_dir() / "images" / "955.png"
    with pytest.raises(ValueError, match="tta must be one of none, flips, dihedral, got 'all'"):
        predict(keras_file, [image], tmp_path / "out", tta="all")
    with pytest.raises(ValueError, match="postprocess: 'biggest' is not a rule"):
        load_model(keras_file, postprocess="biggest")
    with pytest.raises(ValueError, match="threshold must be between 0 and 1"):
        InferenceSettings(threshold=1.5)
    assert not (tmp_path / "out").exists()


def test_settings_round_trip_and_old_headers_keep_their_threshold():
    assert InferenceSettings.from_dict(TUNED.to_dict()) == TUNED
    assert TUNED.to_dict() == {
        "threshold": 0.45,
        "tta": "flips",
        "postprocess": "largest,fill-holes",
    }
    assert TUNED.postprocess == PostProcessing(keep_largest=True, fill_holes=True)
    assert stored_settings({"threshold": 0.3}) == InferenceSettings(threshold=0.3)
    assert stored_settings({"threshold": 0.5, "inference": TUNED.to_dict()}) == TUNED
    with pytest.raises(ValueError, match=r"unknown inference settings \['tt'\]"):
        InferenceSettings.from_dict({"tt": "flips"})


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A tiny U-Net shipped with tuned inference defaults, and one in the older format."""
    network = segkit.models.get("unet", **TINY)
    entries = {}
    for tag, inference in (("tuned", TUNED), ("old", None)):
        path = tmp_path / f"unet-{tag}.npz"
        digest = pretrained.save_weights(
            network,
            path,
            builder="unet",
            config=TINY,
            preprocessing=PREP,
            threshold=0.3,
            inference=inference,
            inference_chosen_on="a test" if inference else None,
        )
        entries[("unet", tag)] = pretrained.Pretrained("unet", tag, path.name, digest)
    monkeypatch.setattr(pretrained, "PRETRAINED", entries)
    monkeypatch.setattr(pretrained, "weights_path", lambda e: tmp_path / e.filename)
    return network


def test_shipped_weights_bring_their_defaults_unless_switched_off(shipped):
    assert load_model("unet.tuned").settings == TUNED
    assert pretrained.pretrained_header("unet", "tuned")["inference_chosen_on"] == "a test"
    assert load_model("unet.old").settings == InferenceSettings(threshold=0.3)
    assert load_model("unet.tuned", defaults=False).settings == InferenceSettings()
    assert load_model("unet.tuned", tta="none").settings == TUNED.replace(tta="none")
    off_but_one = load_model("unet.tuned", defaults=False, postprocess="fill-holes")
    assert off_but_one.settings == InferenceSettings(postprocess="fill-holes")


def test_set_inference_defaults_keeps_the_arrays_bit_for_bit(shipped, tmp_path):
    path = tmp_path / "unet-old.npz"
    before = dict(np.load(path))
    digest = pretrained.set_inference_defaults(path, TUNED, chosen_on="validation")
    after = dict(np.load(path))
    assert digest == pretrained.sha256(path) and set(before) == set(after)
    for name, array in before.items():
        if name != pretrained.HEADER_KEY:
            assert after[name].dtype == array.dtype and after[name].tobytes() == array.tobytes()
    header = pretrained.read_header(path)
    assert header["inference"] == TUNED.to_dict() and header["threshold"] == 0.3
    pretrained.set_inference_defaults(path, None)
    assert "inference" not in pretrained.read_header(path)
    assert (
        pretrained.read_header(path)["preprocessing"]
        == pretrained.read_header(tmp_path / "unet-tuned.npz")["preprocessing"]
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    keys = [s.key for s in data.find_samples(sample_dir())]
    manifest = folder / "split.json"
    data.Split(
        "random", 0, (0.5, 0.5, 0.0), train=tuple(keys[:3]), val=tuple(keys[3:]), test=()
    ).save(manifest)
    training.train(
        "unet",
        sample_dir(),
        folder / "run",
        quiet=True,
        manifest=str(manifest),
        cache=str(folder / "cache"),
        epochs=1,
        image_size=(32, 32),
        batch_size=2,
        model_config={"base_filters": 4, "depth": 2},
        workers=1,
    )
    return folder / "run"


def test_a_run_has_no_defaults_until_tuned(run_dir):
    assert run_defaults(run_dir) is None
    assert load_model(run_dir).settings == InferenceSettings()
    written = save_run_defaults(run_dir, TUNED, chosen_on="its validation split")
    try:
        assert json.loads(written.read_text())["chosen_on"] == "its validation split"
        assert load_model(run_dir).settings == TUNED
        assert load_model(run_dir, defaults=False).settings == InferenceSettings()
        written.write_text("{}")
        with pytest.raises(ValueError, match="inference.json does not hold inference settings"):
            load_model(run_dir)
    finally:
        written.unlink()


def test_the_command_line_options_come_from_the_settings(shipped, tmp_path):
    for command in ("predict", "evaluate"):
        shown = CliRunner().invoke(cli, [command, "--help"]).output
        for name in ("--threshold", "--tta", "--postprocess", "--no-defaults"):
            assert name in shown, (command, name)
    image = str(sample_dir() / "images" / "955.png")
    args = ["predict", "--model", "unet.tuned", image, "--quiet"]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a"), "--tta", "dihedral"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "b"), "--postprocess", "big"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "segkit: error: postprocess: 'big' is not a rule; give none or a comma-separated list "
        "of largest, min-size=N, fill-holes, at-least-one"
    ]


def test_evaluate_on_the_command_line_applies_the_settings(shipped):
    args = ["evaluate", "--model", "unet.tuned", "--data", str(sample_dir()), "--quiet"]
    reports = {}
    for name, extra in (
        ("defaults", []),
        ("off", ["--no-defaults"]),
        ("0.9", ["--threshold", "0.9"]),
    ):
        result = CliRunner().invoke(cli, [*args, *extra])
        assert result.exit_code == 0, result.output
        reports[name] = result.output.splitlines()[1]
    # The tuned settings (largest region, TTA, 0.45) and the plain ones give other masks.
    assert len(set(reports.values())) == 3, reports
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "--predictions",
            str(sample_dir() / "masks"),
            "--data",
            str(sample_dir()),
            "--tta",
            "flips",
        ],
    )
    assert result.exit_code == 2 and "--tta" in result.output


def test_the_report_records_the_settings_that_made_its_masks(shipped):
    tuned = segkit.load_model("unet.tuned")
    assert tuned.settings.tta != "none"  # the record must show more than a threshold
    report = segkit.evaluate(tuned.with_settings(threshold=0.9), sample_dir())
    assert report["inference"] == {**tuned.settings.to_dict(), "threshold": 0.9}
    assert report["threshold"] == 0.9
