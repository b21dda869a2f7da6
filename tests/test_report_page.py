"""The evaluation page: made from reports of a binary, a multi-class and a volume evaluation
and from a training run; valid HTML, every number read from the report, opened in Chromium."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import html5lib
import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner
from lgg_volumes import build_layout
from scipy import ndimage

import segkit
from segkit import data, report_page, training
from segkit.cli import cli
from segkit.data import Preprocessing
from segkit.demo import sample_dir
from segkit.gallery import Thumbnails
from segkit.inference import Segmenter
from segkit.reports import evaluate, read_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def bright(batch: np.ndarray) -> np.ndarray:
    """A stand-in network: the brightest pixels are tumour (imperfect, so cases differ)."""
    return (batch[..., :1] > 0.55).astype(np.float32)


BRIGHT = Segmenter(bright, Preprocessing(size=(64, 64)), "bright")


def _page(tmp_path_factory, name, report, thumbnails, **options) -> dict:
    out = tmp_path_factory.mktemp(name) / "page.html"
    report_page.write_page(report, out, thumbnails=thumbnails, **options)
    return {"report": report, "path": out, "text": out.read_text()}


@pytest.fixture(scope="module")
def binary(figshare_512, tmp_path_factory):
    pictures = Thumbnails()
    report = evaluate(BRIGHT, figshare_512, thumbnails=pictures)
    return _page(tmp_path_factory, "binary", report, pictures)


@pytest.fixture(scope="module")
def multiclass(figshare_512, tmp_path_factory):
    """Real label maps (tumour type from labels.csv) predicted imperfectly: grown, shifted,
    every third one of the wrong type."""
    predictions = tmp_path_factory.mktemp("label-maps")
    for index, sample in enumerate(data.find_samples(figshare_512)):
        true = data.read_mask(sample, num_classes=4, class_source="sample-label")
        grown = np.roll(ndimage.binary_dilation(true > 0, iterations=2), (3, -2), axis=(0, 1))
        label = sample.label if index % 3 else sample.label % 3 + 1
        iio.imwrite(predictions / f"{sample.key}_mask.png", (grown * label).astype(np.uint8))
    pictures = Thumbnails()
    report = evaluate(
        None, figshare_512, predictions=predictions, classes="tumour-type", thumbnails=pictures
    )
    return _page(tmp_path_factory, "multiclass", report, pictures)


@pytest.fixture(scope="module")
def volume(lgg_root, tmp_path_factory):
    patients = sorted(p.name for p in lgg_root.iterdir() if p.is_dir())[:3]
    root = tmp_path_factory.mktemp("volume-layout")
    build_layout(lgg_root, patients, root, numbers=range(10, 18), step=4)
    pictures = Thumbnails()
    report = evaluate(BRIGHT, root, thumbnails=pictures)
    return _page(tmp_path_factory, "volume", report, pictures)


PAGES = ("binary", "multiclass", "volume")


def _tree(text: str):
    return html5lib.parse(text, namespaceHTMLElements=False)


def _resolve(document, pointer: str):
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


def _written(value, digits: str) -> str:
    """How a number of the report should read on the page."""
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    return format(value, ".4g") if digits == "g" else format(value, f".{int(digits)}f")


def _numbers_match(text: str, document) -> int:
    """Check every number the page marks against the document; return how many it marks.
    Decimal numbers outside marked elements (and code, scripts, styles) fail the check."""
    tree = _tree(text)
    marked = tree.findall(".//*[@data-json]")
    for element in marked:
        value = _resolve(document, element.get("data-json"))
        assert element.text == _written(value, element.get("data-digits")), element.get("data-json")

    def loose_text(element):
        if element.tag in ("script", "style", "code") or element.get("data-json") is not None:
            return element.tail or ""
        if element.get("data-count") is not None:
            return element.tail or ""
        inner = (element.text or "") + "".join(loose_text(child) for child in element)
        return inner + (element.tail or "")

    assert re.findall(r"\d+\.\d+", loose_text(tree.find("body"))) == []
    return len(marked)


@pytest.mark.parametrize("name", PAGES)
def test_page_is_valid_html(name, request):
    page = request.getfixturevalue(name)
    html5lib.HTMLParser(strict=True).parse(page["text"])  # raises on any parse error
    assert page["text"].lstrip().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("name", PAGES)
def test_every_number_on_the_page_is_the_reports(name, request):
    page = request.getfixturevalue(name)
    report = page["report"]
    marked = _numbers_match(page["text"], json.loads(json.dumps(report)))
    assert marked > 6 * len(report["images"])  # the summary and every case's row


@pytest.mark.parametrize("name", PAGES)
def test_a_page_needs_no_network(name, request):
    text = request.getfixturevalue(name)["text"]
    addresses = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert addresses and all(a.startswith("data:image/png;base64,") for a in addresses)
    assert "http://" not in text and "https://" not in text


def test_binary_gallery_is_worst_first_with_outlines(binary):
    report, tree = binary["report"], _tree(binary["text"])
    cards = tree.findall(".//article[@class='card']")
    dice = [report["images"][_index(card)]["dice"] for card in cards]
    assert len(cards) == len(report["images"]) and dice == sorted(dice)
    groups = [o.get("value") for o in tree.findall(".//select[@id='group-filter']/option")]
    assert groups == ["", "glioma", "meningioma", "pituitary"]
    # The pictures carry the Okabe-Ito outline colours (sky blue truth, orange prediction).
    source = cards[0].find(".//img").get("src")
    import base64
    import io

    from PIL import Image

    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))))
    colours = {tuple(c) for c in picture.reshape(-1, 3)}
    assert (86, 180, 233) in colours and (230, 159, 0) in colours


def _index(card) -> int:
    pointer = card.find(".//*[@data-json]").get("data-json")
    return int(pointer.split("/")[2])


def test_embedded_pictures_are_capped(figshare_512, tmp_path, monkeypatch):
    pictures = Thumbnails()
    report = evaluate(BRIGHT, figshare_512, thumbnails=pictures)
    monkeypatch.setattr(report_page, "EMBEDDED_CASES", 5)
    monkeypatch.setattr(report_page, "BEST_CASES", 1)
    monkeypatch.setattr(report_page, "WORST_PER_GROUP", 1)
    text = report_page.render_page(report, thumbnails=pictures)
    tree = _tree(text)
    cards = tree.findall(".//article[@class='card']")
    indices = [_index(card) for card in cards]
    order = sorted(range(len(report["images"])), key=lambda i: (report["images"][i]["dice"], i))
    assert len(cards) == 5 and order[-1] in indices  # the best case is among them
    left_out = tree.find(".//*[@data-count='pictures not embedded']")
    assert int(left_out.text) == len(report["images"]) - 5


def test_multiclass_page_filters_by_class(multiclass):
    report, tree = multiclass["report"], _tree(multiclass["text"])
    options = [o.get("value") for o in tree.findall(".//select[@id='class-filter']/option")]
    assert options == ["", *report["classes"]]
    rows = [r.find("th").text for r in tree.findall(".//table[@class='summary']/tbody/tr")]
    assert rows[1:4] == [f"class {name}" for name in report["classes"]]
    glioma_cases = [
        row
        for row in tree.findall(".//table[@id='case-table']/tbody/tr")
        if "glioma" in json.loads(row.get("data-classes"))
    ]
    assert len(glioma_cases) == report["classes"]["glioma"]["n_images"]


def test_volume_page_shows_slices_through_each_lesion(volume):
    report, tree = volume["report"], _tree(volume["text"])
    cards = tree.findall(".//article[@class='card volume']")
    assert [c.get("data-group") for c in cards] == [
        v["case"] for v in sorted(report["volumes"], key=lambda v: v["dice"])
    ]
    for card in cards:
        shown = card.findall(".//img")
        assert 1 <= len(shown) <= report_page.SLICES_PER_VOLUME
        case = card.get("data-group")
        slices = [e for e in report["images"] if e["patient"] == case]
        # Slices through the true lesion; where the volume holds none, the predicted one.
        lesion = [e for e in slices if e["true_pixels"]] or [
            e for e in slices if e["predicted_pixels"]
        ]
        captions = {b.get("data-caption") for b in card.findall(".//button")}
        assert captions <= {f"{case}, slice {e['slice']}" for e in lesion}


def test_assets_hold_every_picture_and_the_page_links_them(figshare_512, tmp_path):
    assets = tmp_path / "pictures"
    report = evaluate(BRIGHT, figshare_512, tmp_path / "report.json", thumbnails=assets)
    assert report["thumbnails"] == str(assets)
    out = tmp_path / "page" / "report.html"
    out.parent.mkdir()
    report_page.write_page(report, out, assets=assets)
    tree = _tree(out.read_text())
    sources = [img.get("src") for img in tree.findall(".//article//img")]
    assert len(sources) == len(report["images"])
    assert all((out.parent / s).is_file() for s in sources) and not any(
        s.startswith("data:") for s in sources
    )


def test_a_report_without_pictures_says_why(figshare_512, tmp_path):
    report = evaluate(BRIGHT, figshare_512)
    tree = _tree(report_page.render_page(report))
    assert tree.findall(".//article") == []
    assert "drawn while `segkit evaluate` has the predicted masks in memory" in "".join(
        tree.find(".//p[@class='notice']").itertext()
    )


def test_cli_evaluate_html_then_report_from_the_json(tmp_path):
    """`segkit evaluate --html --assets`, then `segkit report` on the JSON it wrote."""
    predictions = tmp_path / "pred"
    shutil.copytree(sample_dir() / "masks", predictions)
    (predictions / "955_mask.png").write_bytes(
        (sample_dir() / "masks" / "172_mask.png").read_bytes()
    )
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "evaluate", "--predictions", str(predictions), "--data", str(sample_dir()),
            "--out", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html"),
            "--assets", str(tmp_path / "assets"), "--quiet",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"page written to {tmp_path / 'r.html'}" in result.output
    report = read_report(tmp_path / "r.json")
    assert len(list((tmp_path / "assets").glob("*.png"))) == report["n_images"] == 6
    result = runner.invoke(
        cli, ["report", str(tmp_path / "r.json"), "--out", str(tmp_path / "p.html")]
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "p.html").read_text()
    assert _numbers_match(text, report) > 0
    # Made again from the JSON, the pictures are embedded: the page stands alone.
    assert text.count('src="data:image/png') == 6 + 2  # six cases and two plots


def _old_report(tmp_path) -> Path:
    report = evaluate(None, sample_dir(), predictions=sample_dir() / "masks")
    del report["format"], report["format_version"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(report))
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (_old_report, "is not a segkit evaluation report"),
        (lambda tmp: _json(tmp, {"format": "segkit.evaluation", "format_version": 1}),
         "format version 1; this segkit reads version 2"),
        (lambda tmp: _json(tmp, [1, 2, 3]), "is not a segkit evaluation report"),
        (lambda tmp: _unfinished_run(tmp), "has not finished an epoch"),
        (lambda tmp: tmp / "nothing.json", "does not exist"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, make, message):
    source = make(tmp_path)
    out, assets = tmp_path / "out" / "page.html", tmp_path / "out" / "assets"
    result = CliRunner().invoke(
        cli, ["report", str(source), "--out", str(out), "--assets", str(assets)]
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segkit: error:") and message in lines[0]
    assert not (tmp_path / "out").exists()


def _json(tmp_path: Path, value) -> Path:
    path = tmp_path / "foreign.json"
    path.write_text(json.dumps(value))
    return path


def _unfinished_run(tmp_path: Path) -> Path:
    """A run folder as a run leaves it before its first epoch ends: config and split only."""
    from segkit.runs import RunFolder, TrainConfig

    run = RunFolder(tmp_path / "run")
    run.create(
        TrainConfig(data=str(sample_dir())), data.split_samples(data.find_samples(sample_dir()))
    )
    return run.path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny real run (two epochs on the bundled slices) with its test split scored inside."""
    base = tmp_path_factory.mktemp("run")
    keys = [s.key for s in data.find_samples(sample_dir())]
    manifest = base / "split.json"
    data.Split(
        method="random", seed=0, fractions=(0.5, 0.3, 0.2),
        train=tuple(keys[:3]), val=tuple(keys[3:5]), test=tuple(keys[5:]),
    ).save(manifest)  # fmt: skip
    run = base / "run"
    training.train(
        "unet", sample_dir(), run, quiet=True, manifest=str(manifest), cache=str(base / "cache"),
        epochs=2, image_size=(32, 32), batch_size=2, workers=1,
        model_config={"base_filters": 4, "depth": 2},
    )  # fmt: skip
    evaluate(
        run, sample_dir(), run / "test-report.json", manifest=run / "split.json", subset="test",
        thumbnails=run / "test-pictures",
    )  # fmt: skip
    return run


def test_run_page_shows_curves_config_and_the_test_report(run_dir, tmp_path):
    out = tmp_path / "run.html"
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    html5lib.HTMLParser(strict=True).parse(text)
    record = json.loads(json.dumps(report_page.run_record(run_dir)))
    assert record["test_file"] == "test-report.json" and len(record["history"]) == 2
    assert _numbers_match(text, record) > 10
    tree = _tree(text)
    assert tree.find(".//*[@data-json='/best_epoch']").text == str(record["best_epoch"])
    assert tree.find(".//*[@data-json='/test/dice_mean']") is not None
    assert len(tree.findall(".//article[@class='card']")) == record["test"]["n_images"] == 1


@pytest.mark.backend
def test_a_keras_model_evaluates_to_a_page(tmp_path):
    model = segkit.models.get("unet", input_shape=(32, 32, 1), base_filters=4, depth=2)
    model.save(tmp_path / "tiny.keras")
    pictures = Thumbnails()
    report = evaluate(tmp_path / "tiny.keras", sample_dir(), thumbnails=pictures)
    assert report["weights_sha256"] == segkit.weights.sha256(tmp_path / "tiny.keras")
    text = report_page.render_page(report, thumbnails=pictures)
    assert _numbers_match(text, report) > 0
    assert len(_tree(text).findall(".//article[@class='card']")) == 6


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium) to open pages in")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.mark.parametrize("name", PAGES)
def test_page_opens_in_chromium_without_errors(name, request, browser):
    page_file = request.getfixturevalue(name)["path"]
    problems, outside = [], []
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else 0)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "request", lambda r: None if r.url.startswith(("file:", "data:")) else outside.append(r.url)
    )
    page.goto(page_file.as_uri())
    assert page.title().startswith("Evaluation of")
    cards = page.locator("#cards > .card")
    if page.locator("#group-filter").count():  # filtering hides the other groups' cards
        group = page.locator("#group-filter option").nth(1).get_attribute("value")
        page.select_option("#group-filter", group)
        visible = cards.evaluate_all("cs => cs.filter(c => !c.hidden).map(c => c.dataset.group)")
        assert visible and set(visible) == {group}
        page.select_option("#group-filter", "")
    page.locator("button.enlarge").first.click()  # a picture opens large
    assert page.locator("#enlarged").is_visible()
    enlarged = page.locator("#enlarged-image").get_attribute("src")
    assert enlarged == page.locator("button.enlarge img").first.get_attribute("src")
    page.keyboard.press("Escape")
    page.locator("#case-table thead button").nth(2).click()  # sort by Dice, lowest first
    dice = page.locator("#case-table tbody tr td:nth-child(3)").all_text_contents()
    numbers = [float(d) for d in dice if d != "–"]
    assert numbers == sorted(numbers)
    page.close()
    assert problems == [] and outside == []


def test_lgg_slices_are_grouped_by_patient(lgg_root, tmp_path):
    """The LGG layout has no tumour types: its cases are grouped by patient."""
    patients = sorted(p.name for p in lgg_root.iterdir() if p.is_dir())[:2]
    for patient in patients:
        (tmp_path / "lgg" / patient).mkdir(parents=True)
        for number in (12, 14):
            for suffix in ("", "_mask"):
                name = f"{patient}_{number}{suffix}.tif"
                shutil.copy(lgg_root / patient / name, tmp_path / "lgg" / patient / name)
    pictures = Thumbnails()
    report = evaluate(BRIGHT, tmp_path / "lgg", thumbnails=pictures)
    tree = _tree(report_page.render_page(report, thumbnails=pictures))
    options = [o.get("value") for o in tree.findall(".//select[@id='group-filter']/option")]
    assert options == ["", *patients]
    assert {c.get("data-group") for c in tree.findall(".//article")} == set(patients)
