"""What still made a new user wait without knowing why, or look at an output and see nothing,
tried as one would: each case failed before it was fixed.

Most test the command line's behaviour, not numerics, so they run once (on the first backend
of `make test`); those that run a Keras model in a way that differs by backend are marked.
"""

from __future__ import annotations

import inspect
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import segkit
from segkit import progress
from segkit.cli import cli
from segkit.demo import sample_dir
from segkit.models import pretrained as shipped

TINY = {"input_shape": (32, 32, 1), "base_filters": 4, "depth": 2}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result, *words):
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("segkit: error: ")
    for word in words:
        assert word in result.stderr


@pytest.fixture
def tiny_shipped(tmp_path, monkeypatch):
    """A tiny U-Net standing in for shipped weights, ``unet.test``, with dihedral TTA as its
    stored default, as the real ones have."""
    from segkit.inference import InferenceSettings

    path = tmp_path / "unet-test.npz"
    prep = {"size": (32, 32), "channels": 1, "normalize": "divide255"}
    network = segkit.models.get("unet", **TINY)
    shipped.save_weights(network, path, builder="unet", config=TINY, preprocessing=prep)
    digest = shipped.set_inference_defaults(path, InferenceSettings(0.4, "dihedral"), "a test")
    entry = shipped.Pretrained("unet", "test", path.name, digest)
    monkeypatch.setattr(shipped, "PRETRAINED", {("unet", "test"): entry})
    monkeypatch.setattr(shipped, "weights_path", lambda e: tmp_path / e.filename)
    return "unet.test"


# 1. Long commands show progress, with a time left measured after the first item.
def test_the_time_left_is_estimated_from_items_after_the_first(monkeypatch):
    clock = iter([0.0, 50.0, 51.0, 52.0, 53.0, 54.0])  # the first item carries a 50 s start-up
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    shown = progress.Progress(60, "images", "predict", stream=stream)
    for _ in range(5):
        shown.update()
    lines = stream.getvalue().split("\r")[1:]
    assert lines[0] == "predict: 1/60 images"  # one item tells nothing yet
    # 3 items in the 3 s after the first: 1 image/s, 56 s left (not 56 x 50 s)
    assert lines[3] == "predict: 4/60 images, 1.0 images/s, 56 s left"


def test_explain_and_demo_show_progress_unless_quiet(tmp_path, tiny_shipped):
    image = sample_dir() / "images" / "955.png"
    args = ("explain", "--model", tiny_shipped, image, "--method", "smoothgrad")
    loud = invoke(*args, "--out", tmp_path / "loud")
    assert loud.exit_code == 0, loud.output
    # smoothgrad's 25 noisy copies, 8 a pass, after a forward pass: 5 passes per image
    assert "explain: 5/5 passes" in loud.stderr
    quiet = invoke(*args, "--out", tmp_path / "quiet", "--quiet")
    assert quiet.exit_code == 0 and "explain:" not in quiet.stderr
    demo = invoke("demo", "--out", tmp_path / "demo")
    assert "predict: 6/6 images" in demo.stderr and "evaluate: 6/6 images" in demo.stderr
    quiet = invoke("demo", "--out", tmp_path / "demo", "--quiet")
    assert quiet.exit_code == 0 and "6/6" not in quiet.stderr


# 2. The stored settings and what they cost are said at the start.
def test_predict_evaluate_and_explain_say_which_stored_settings_apply_and_their_cost(
    tmp_path, tiny_shipped
):
    images = sample_dir() / "images"
    result = invoke("predict", "--model", tiny_shipped, images, "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    first = result.stderr.splitlines()[0]
    assert first == (
        "predict: unet.test: threshold 0.4, TTA dihedral, post-processing none (stored with the "
        "model: threshold, TTA); 8 network passes per image; --tta none is about 8x faster"
    )
    chosen = invoke(
        "predict", "--model", tiny_shipped, images, "--out", tmp_path / "q", "--tta", "none"
    )
    assert (
        "post-processing none (stored with the model: threshold); 1 network pass per image\n"
        in chosen.stderr
    )
    scored = invoke("evaluate", "--model", tiny_shipped, "--data", sample_dir(), "--no-defaults")
    assert scored.stderr.startswith("evaluate: unet.test: threshold 0.5, TTA none, ")
    assert "1 network pass per image" in scored.stderr and "stored" not in scored.stderr
    explained = invoke("explain", "--model", tiny_shipped, images / "955.png", "--out", tmp_path)
    assert explained.stderr.startswith(
        "explain: unet.test: threshold 0.4 (stored with the model); a map explains one pass of "
        "the network, without the stored TTA dihedral"
    )
    quiet = invoke("predict", "--model", tiny_shipped, images, "--out", tmp_path / "p", "--quiet")
    assert "passes" not in quiet.stderr


# 3. Commands that run no network start without a backend; TensorFlow's C++ chatter is off.
BACKENDS = {"keras", "tensorflow", "torch", "jax"}


def _in_fresh_process(code: str, **env) -> list[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", *env)}
    environment.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**environment, **env},
        check=True,
    )
    return result.stdout.splitlines()


def test_help_and_models_import_no_backend():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from segkit.cli import cli\n"
        "for args in (['--help'], ['models'], ['models', 'res*'], ['predict', '--help']):\n"
        "    result = CliRunner().invoke(cli, args)\n"
        "    print(result.exit_code, result.output.splitlines()[0])\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {BACKENDS!r}))\n"
    )
    lines = _in_fresh_process(code)
    assert lines[0] == "0 Usage: cli [OPTIONS] COMMAND [ARGS]..."
    assert lines[1].startswith("0 attention_unet     Attention U-Net")
    assert (
        lines[2].startswith("0 resunet            Residual U-Net")
        and "[weights: figshare]" in lines[2]
    )
    assert lines[3].startswith("0 Usage: cli predict")
    assert lines[4] == "[]"


def test_the_builtin_descriptions_are_the_builders_docstrings():
    from segkit.models import _registry

    for name, (module, description) in _registry.BUILTINS.items():
        built = segkit.models.builder(name)
        assert built.__module__ == module
        assert inspect.getdoc(built).splitlines()[0] == description


def test_a_registry_imports_a_builtin_entry_on_first_use(tmp_path, monkeypatch):
    from segkit._plugins import Registry

    (tmp_path / "lazy_thing_holder.py").write_text(
        "from segkit._plugins import Registry\n"
        "things = Registry('thing', 'things', 'segkit.test_things',"
        " builtins={'thing': ('lazy_thing', 'A thing.')})\n"
    )
    (tmp_path / "lazy_thing.py").write_text(
        "from lazy_thing_holder import things\n\n"
        "@things.register('thing')\n"
        "def thing():\n"
        "    '''A thing, imported.'''\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from lazy_thing_holder import things

    assert isinstance(things, Registry)
    assert things.names() == ["thing"] and things.describe("thing") == "A thing."
    assert "lazy_thing" not in sys.modules
    assert things.lookup("thing").__module__ == "lazy_thing"
    with pytest.raises(ValueError, match="'thing' is already registered by lazy_thing"):
        things.add("thing", lambda: None)
    monkeypatch.delitem(sys.modules, "lazy_thing")
    monkeypatch.delitem(sys.modules, "lazy_thing_holder")


def test_tensorflow_start_up_chatter_is_off_unless_the_user_set_its_level():
    code = "import os, segkit; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    assert _in_fresh_process(code) == ["2"]
    assert _in_fresh_process(code, TF_CPP_MIN_LOG_LEVEL="0") == ["0"]


# 4. A split too small for its sides says what it did and what to do.
TINY_TRAINING = ("--epochs", 1, "--image-size", 32, "--batch-size", 2)
TINY_TRAINING += ("--model-config", "base_filters=4", "--model-config", "depth=2", "--quiet")


def test_a_split_without_validation_says_why_and_what_to_do(tmp_path, figshare_256):
    import shutil

    folder = tmp_path / "forty"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for index in range(1, 41):  # 40 meningioma slices: two blocks of 20
        shutil.copy(figshare_256 / "images" / f"{index}.png", folder / "images")
        shutil.copy(figshare_256 / "masks" / f"{index}_mask.png", folder / "masks")
    result = invoke("train", "--data", folder, "--out", tmp_path / "run", *TINY_TRAINING)
    one_line_error(
        result,
        "leaves 40 training and 0 validation samples",
        "blocks of 20 consecutive slices of a label: 2 blocks",
        "use --split random",
        "--manifest",
    )


def test_training_warns_when_nothing_is_held_out_for_testing(tmp_path):
    from segkit import data

    keys = [s.key for s in data.find_samples(sample_dir())]
    manifest = tmp_path / "split.json"
    data.Split("random", 0, (0.8, 0.2, 0.0), tuple(keys[:4]), tuple(keys[4:]), ()).save(manifest)
    args = ("train", "--data", sample_dir(), "--out", tmp_path / "run", "--manifest", manifest)
    with pytest.warns(
        UserWarning, match="holds out nothing for testing .*4 training, 2 validation"
    ):
        result = invoke(*args, "--cache", tmp_path / "cache", *TINY_TRAINING)
    assert result.exit_code == 0, result.output


# 5. A label map read as a binary mask names the options that read it as a label map.
def _label_map_data(folder, count=2):
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        image = rng.integers(0, 256, (32, 32), dtype=np.uint8)
        Image.fromarray(image).save(folder / "images" / f"{index}.png")
        labels = np.zeros((32, 32), np.uint8)
        labels[4:12, 4:12], labels[16:24, 16:24] = 1, 2
        Image.fromarray(labels).save(folder / "masks" / f"{index}_mask.png")
    return folder


def test_a_label_map_without_its_options_names_them(tmp_path):
    folder = _label_map_data(tmp_path / "maps")
    result = invoke("evaluate", "--predictions", folder / "masks", "--data", folder)
    one_line_error(
        result,
        "is not binary: values 0, 1, 2",
        "--num-classes 3",
        "classes.json",
    )
    scored = invoke(
        "evaluate", "--predictions", folder / "masks", "--data", folder, "--num-classes", 3
    )
    assert scored.exit_code == 0, scored.output


# 6. Predicted label maps are palette PNGs: class indices as values, visible colours.
@pytest.fixture
def three_class_model(tmp_path):
    path = tmp_path / "three.keras"
    segkit.models.get("unet", **{**TINY, "num_classes": 3}).save(path)
    return path


def test_predicted_label_maps_are_palette_pngs_segkit_reads_back(tmp_path, three_class_model):
    from PIL import Image

    from segkit import data
    from segkit.visualize import class_colour

    images = sample_dir() / "images"
    result = invoke("predict", "--model", three_class_model, images, "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    written = Image.open(tmp_path / "p" / "955_mask.png")
    assert written.mode == "P"
    values = np.asarray(written)
    assert set(np.unique(values)) <= {0, 1, 2}
    palette = written.getpalette()
    assert palette[:3] == [0, 0, 0] and tuple(palette[3:6]) == class_colour(1)
    assert tuple(palette[6:9]) == class_colour(2)
    # segkit reads them back as label maps, and scores them as predictions.
    np.testing.assert_array_equal(data.read_mask_file(tmp_path / "p" / "955_mask.png", 3), values)
    truth = tmp_path / "truth"
    (truth / "masks").mkdir(parents=True)
    (truth / "images").symlink_to(images)
    for path in (tmp_path / "p").glob("*_mask.png"):
        Image.fromarray(np.asarray(Image.open(path))).save(truth / "masks" / path.name)
    scored = invoke(
        "evaluate", "--predictions", tmp_path / "p", "--data", truth, "--num-classes", 3
    )
    assert scored.exit_code == 0, scored.output
    assert scored.stdout.splitlines()[1].split()[2] in ("1.000", "nan")


# 7. Overlays colour-blind readers can tell apart, a legend sized to the image, the Dice on it;
# saliency pictures that say which class they explain and outline it.
OKABE_ITO = {(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178)}
OKABE_ITO |= {(213, 94, 0), (204, 121, 167)}


def test_overlays_are_colour_blind_safe_sized_to_the_image_and_give_the_dice(monkeypatch):
    from segkit import visualize
    from segkit.evaluation import score

    assert {visualize.PREDICTED_COLOUR, visualize.TRUE_COLOUR} <= OKABE_ITO
    true = np.zeros((512, 512), bool)
    true[100:300, 100:300] = True
    predicted = np.roll(true, 20, axis=0)
    image = np.full((512, 512), 60, np.uint8)
    drawn = []
    real_legend = visualize._draw_legend
    monkeypatch.setattr(
        visualize, "_draw_legend", lambda p, e: drawn.append(e) or real_legend(p, e)
    )
    big = visualize.overlay(image, predicted, true, legend=True)
    dice = score(predicted, true)["dice"]
    assert [name for name, _ in drawn[0]] == ["predicted", "true", f"Dice {dice:.3f}"]
    labels = visualize.label_overlay(
        image, predicted.astype(np.uint8) * 2, ["bg", "a", "b"], true.astype(np.uint8) * 2
    )
    assert [name for name, _ in drawn[1]] == ["b", "true: b", f"Dice {dice:.3f}"]
    assert labels.shape == (512, 512, 3)

    def legend_height(picture):  # rows of the black legend box in the first column
        return int((picture[:, 0] == 0).all(axis=-1).argmin())

    small = visualize.overlay(
        image[:128, :128], predicted[:128, :128], true[:128, :128], legend=True
    )
    assert legend_height(big) > 1.5 * legend_height(small)  # letters grow with the image


def test_saliency_pictures_name_and_outline_the_class_they_explain(
    tmp_path, three_class_model, monkeypatch
):
    import segkit.explain as explaining
    from segkit.inference import load_model

    drawn = {}
    monkeypatch.setattr(
        explaining,
        "_draw",
        lambda image, m, region, path, title: drawn.update(region=region, title=title),
    )
    model = load_model(three_class_model)
    image = sample_dir() / "images" / "955.png"
    network_mask = None
    for label in (1, 2):
        explaining.explain(model, [image], tmp_path, target=label)
        assert (
            drawn["title"] == f"955: gradient, class {label} (class_{label}), its predicted outline"
        )
        ((_, _, probs),) = model.probabilities([image])
        network_mask = model.to_mask(probs)
        np.testing.assert_array_equal(drawn["region"], network_mask == label)
    explaining.explain(model, [image], tmp_path)
    assert drawn["title"] == "955: gradient, the predicted region, outlined"
    np.testing.assert_array_equal(drawn["region"], network_mask > 0)


# 8. An exported model points out the same unusual inputs as the Keras model it came from.
def test_onnx_models_warn_about_the_same_unusual_inputs_as_keras(tmp_path, figshare_256):
    import keras
    from PIL import Image

    from segkit import data
    from segkit.data.intensity import IntensityRange
    from segkit.inference import load_model, predict

    if keras.backend.backend() == "jax":
        pytest.skip("ONNX export runs on tensorflow and torch")
    samples = data.find_samples(figshare_256)[:200:4]
    trained = IntensityRange.measure(data.decode(s, data.Preprocessing())[0] for s in samples)
    path = tmp_path / "unet-test.npz"
    prep = {"size": (32, 32), "channels": 1, "normalize": "divide255"}
    network = segkit.models.get("unet", **TINY)
    digest = shipped.save_weights(
        network, path, builder="unet", config=TINY, preprocessing=prep, intensity=trained
    )
    entry = shipped.Pretrained("unet", "test", path.name, digest)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shipped, "PRETRAINED", {("unet", "test"): entry})
        patch.setattr(shipped, "weights_path", lambda e: tmp_path / e.filename)
        keras_model = load_model("unet.test")
        segkit.export("unet.test", tmp_path / "test.onnx")
    onnx_model = load_model(tmp_path / "test.onnx")
    assert onnx_model.intensity == keras_model.intensity == trained
    dark = tmp_path / "dark.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(dark)
    for model in (keras_model, onnx_model):
        with pytest.warns(UserWarning, match=r"1 of 1 inputs look unlike .*dark.png: mean 0.000"):
            predict(model, [dark], tmp_path / "out")


# 9. Messages in the command line's words, counts that read well, units in both headers, and a
# run folder that resumes from anywhere.
def test_messages_use_the_command_lines_words(tmp_path, tiny_shipped):
    from segkit import data
    from segkit.explain import saliency
    from segkit.inference import Segmenter

    onnx_like = Segmenter(lambda batch: batch, data.Preprocessing(size=(32, 32)), "m.onnx")
    with pytest.raises(ValueError, match="use --method occlusion") as caught:
        saliency(onnx_like, np.zeros((32, 32, 1), np.uint8), method="smoothgrad")
    assert "method='occlusion' in Python" in str(caught.value)
    samples = data.find_samples(sample_dir())
    prep = data.Preprocessing(size=(32, 32))
    with pytest.raises(ValueError) as caught:
        data.SegmentationDataset(samples, prep, batch_size=3, replicas=2)
    assert str(caught.value).startswith(
        "--batch-size 3 must be a multiple of the number of replicas (2, one per device)"
    )
    with pytest.raises(
        ValueError, match=r"replicas \(2\) must be a multiple of the number of processes \(3\)"
    ):
        data.SegmentationDataset(samples, prep, batch_size=2, replicas=2, process=(0, 3))
    image = sample_dir() / "images" / "955.png"
    one = invoke("predict", "--model", tiny_shipped, image, "--out", tmp_path / "p", "--quiet")
    assert one.stdout == f"1 mask written to {tmp_path / 'p'}\n"
    explained = invoke(
        "explain", "--model", tiny_shipped, image, "--out", tmp_path / "e", "--quiet"
    )
    assert explained.stdout == f"1 saliency map written to {tmp_path / 'e'}\n"


def test_both_tables_give_the_unit_of_hd95():
    from segkit.reports import format_table

    volume = {"case": "c1", "slices": 3, "dice": 0.5, "iou": 0.3, "hd95_mm": 4.0, "assd_mm": 1.0}
    summary = {"n_images": 3, "dice_mean": 0.5, "dice_pooled": 0.5, "iou_mean": 0.3}
    report = {**summary, "hd95_mean": 2.0, "hd95_nan": 0, "resolution": "original"}
    report |= {"volumes": [volume], "volume_dice_mean": 0.5, "volume_iou_mean": 0.3}
    report |= {"volume_hd95_mean_mm": 4.0, "volume_assd_mean_mm": 1.0, "volume_dice_pooled": 0.5}
    lines = format_table(report).splitlines()
    assert lines[0].split()[-2:] == ["px", "n/a"] and "hd95 px" in lines[0]
    three_d = next(line for line in lines if line.startswith("3-D"))
    assert three_d.split()[-4:] == ["hd95", "mm", "assd", "mm"]


def test_a_run_stores_its_data_path_resolved_and_resumes_from_elsewhere(tmp_path, monkeypatch):
    import json
    import shutil

    from segkit import data

    shutil.copytree(sample_dir(), tmp_path / "work" / "mc")
    keys = [s.key for s in data.find_samples(sample_dir())]
    split = data.Split("random", 0, (0.5, 0.25, 0.25), tuple(keys[:4]), (keys[4],), (keys[5],))
    split.save(tmp_path / "work" / "split.json")
    monkeypatch.chdir(tmp_path / "work")
    result = invoke(
        "train", "--data", "mc", "--out", "run", "--manifest", "split.json", *TINY_TRAINING
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "work" / "run" / "config.json").read_text())["config"]
    assert config["data"] == str((tmp_path / "work" / "mc").resolve())
    assert config["manifest"] == str((tmp_path / "work" / "split.json").resolve())
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    resumed = invoke("train", "--resume", tmp_path / "work" / "run", "--epochs", 2, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert "after 2 of 2 epochs" in resumed.stdout


# 10. The docs tell the truth: fixable errors are one line, and `segkit info` looks as shown.
def test_option_errors_and_mixed_inputs_are_one_line(tmp_path, tiny_shipped):
    nib = pytest.importorskip("nibabel")

    volume = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 4), np.float32), np.eye(4)), volume)
    image = sample_dir() / "images" / "955.png"
    mixed = invoke("predict", "--model", tiny_shipped, volume, image, "--out", tmp_path / "out")
    one_line_error(mixed, "give volumes or images, not both", "(see cli predict --help)")
    one_line_error(invoke("predict", "--model", tiny_shipped, image), "Missing option '--out'")
    one_line_error(invoke("predict", "--model", tiny_shipped, image, "--tta", "all"), "'--tta'")
    assert not (tmp_path / "out").exists()


def test_the_installation_page_shows_what_segkit_info_prints():
    from pathlib import Path

    from segkit.environment import describe_environment

    page = (Path(__file__).parents[1] / "docs" / "installation.md").read_text()
    shown = page.split("$ segkit info\n", 1)[1].split("```", 1)[0]
    keys = [line.split(":", 1)[0].strip() for line in shown.splitlines()]
    assert keys == list(describe_environment())


def test_int8_export_shows_its_calibration_and_measurement_unless_quiet(tmp_path):
    import keras

    if keras.backend.backend() == "jax":
        pytest.skip("ONNX export runs on tensorflow and torch")
    segkit.models.get("unet", **TINY).save(tmp_path / "tiny.keras")
    args = ("export", "--model", tmp_path / "tiny.keras", "--quantize", "int8")
    args += ("--calibration", sample_dir())
    loud = invoke(*args, "--out", tmp_path / "loud.onnx")
    assert loud.exit_code == 0, loud.output
    assert "calibrate: 6/6 slices" in loud.stderr and "measure: 12/12 slices" in loud.stderr
    quiet = invoke(*args, "--out", tmp_path / "quiet.onnx", "--quiet")
    assert quiet.exit_code == 0 and "slices" not in quiet.stderr
