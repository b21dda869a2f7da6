"""One self-contained HTML page of an evaluation report or a training run, for people to look at.

```python
import segkit
from segkit.gallery import Thumbnails
from segkit.report_page import write_page

pictures = Thumbnails()                       # kept in memory for the page
report = segkit.evaluate("resunet.figshare", "data/test", "report.json", thumbnails=pictures)
write_page(report, "report.html", thumbnails=pictures)
write_page("runs/unet", "run.html")           # curves, best epoch, config (and a test report)
```

The page opens in any browser without a server or the network: its pictures and plots are
embedded as data URIs, its styles and the few lines of JavaScript that filter, sort and enlarge
are inline. Every number on it is read from the report (or the run's files), never computed
again; each sits in an element whose ``data-json`` attribute is the JSON pointer of the value
it shows, so a page can be checked against its report.

Its size is bounded: at most `EMBEDDED_CASES` case pictures are embedded (the worst cases,
the worst of each group, the best few) and at most `TABLE_ROWS` cases are listed. With
``assets`` (a folder) every picture is written there and linked instead.

The gallery needs pictures of the cases, drawn by `segkit.gallery.Thumbnails` while
`segkit.reports.evaluate` has the masks in memory. A report made without them (or whose
``thumbnails`` folder is gone) gets a page without a gallery that says so: its predicted masks
are not stored anywhere a page could read them back from.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from urllib.parse import quote

import numpy as np

from segkit._io import atomic_path
from segkit.gallery import OKABE_ITO, PREDICTED_OUTLINE, TRUE_OUTLINE, Thumbnails
from segkit.reports import REPORT_FORMAT, REPORT_FORMAT_VERSION, read_report
from segkit.runs import RunFolder
from segkit.visualize import CLASS_COLOURS, class_colour, curves_figure
from segkit.visualize import TRUE_OUTLINE as LABEL_TRUE_OUTLINE

#: Case pictures embedded in a page at most (without ``assets``).
EMBEDDED_CASES = 60
#: Of those, the best cases shown, and the worst of each group (tumour type, volume).
BEST_CASES = 12
WORST_PER_GROUP = 6
#: Volumes: slices shown per volume, through its lesion.
SLICES_PER_VOLUME = 3
#: Cases listed in the page's table at most (the worst first); the report holds them all.
TABLE_ROWS = 2000

#: Colour of the plots' rows of all cases together.
ALL_COLOUR = (90, 90, 90)
#: Colours of the plots' groups: Okabe-Ito, yellow last (it is faint on white).
_COLOURS = [colour for name, colour in OKABE_ITO.items() if name != "yellow"] + [
    OKABE_ITO["yellow"]
]


def write_page(
    source: dict | str | Path,
    out: str | Path,
    *,
    assets: str | Path | None = None,
    thumbnails: Thumbnails | None = None,
) -> Path:
    """Write the page of an evaluation report or a training run, atomically.

    Args:
        source: a report (the dict `segkit.evaluate` returns), a report's JSON file, or a run
            folder (with, optionally, a report of its test split inside: see `run_record`).
        out: the HTML file to write.
        assets: a folder for the case pictures, linked from the page instead of embedded:
            every pictured case is shown, and the page is small. None embeds up to
            `EMBEDDED_CASES` pictures.
        thumbnails: the pictures `segkit.reports.evaluate` drew in memory; None reads them
            from the folder the report names, where there is one.

    Returns:
        ``out`` as a Path.

    Raises:
        FileNotFoundError: no such file or folder.
        ValueError: a report of another format or version; a run folder without a finished
            epoch. Nothing is written then.
    """
    page = render_page(source, out=out, assets=assets, thumbnails=thumbnails)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return Path(out)


def render_page(
    source: dict | str | Path,
    *,
    out: str | Path = "page.html",
    assets: str | Path | None = None,
    thumbnails: Thumbnails | None = None,
) -> str:
    """The page `write_page` writes, as text (``out`` is where links to assets start from)."""
    if isinstance(source, dict):
        record, kind = check_report(source, "the report given"), "evaluation"
    elif Path(source).is_dir():
        record, kind = run_record(source), "run"
    else:
        record, kind = read_report(source), "evaluation"
    # A report's thumbnails folder, when relative, may be relative to the report's own folder.
    base = (
        None if isinstance(source, dict) else Path(source) if kind == "run" else Path(source).parent
    )
    pictures = _Pictures(out, assets, base)
    if kind == "run":
        test = record.get("test")
        view = {
            "kind": "run",
            "title": f"Training run: {Path(record['run']).name}",
            "run": _run_view(record),
            "evaluation": None if test is None else _evaluation_view(test, "/test", pictures),
        }
    else:
        view = {
            "kind": "evaluation",
            "title": f"Evaluation of {record['model']}",
            "run": None,
            "evaluation": _evaluation_view(record, "", pictures, thumbnails),
        }
    return _template().render(
        **view,
        true_colour=_css(TRUE_OUTLINE),
        predicted_colour=_css(PREDICTED_OUTLINE),
        label_true_colour=_css(LABEL_TRUE_OUTLINE),
        class_colours=[_css(c) for c in CLASS_COLOURS],
    )


def check_report(report: dict, name: str) -> dict:
    """``report`` if it is an evaluation report of this segkit's format; else ValueError."""
    if report.get("format") != REPORT_FORMAT or report.get("format_version") != (
        REPORT_FORMAT_VERSION
    ):
        raise ValueError(
            f"{name} is not a segkit evaluation report of format version "
            f"{REPORT_FORMAT_VERSION}: score the model again with `segkit evaluate`"
        )
    return report


def run_record(run_dir: str | Path) -> dict:
    """What a run's page shows, read from its folder: ``run``, ``config`` (``config.json``),
    ``epoch``, ``best_epoch``, ``best_dice``, ``history`` (one row per finished epoch, as in
    ``log.csv``) and ``test``: the newest evaluation report in the folder that scored the
    run's test split (``segkit evaluate --model RUN --manifest RUN/split.json --subset test
    --out RUN/test-report.json``), where there is one.

    Raises:
        FileNotFoundError: the folder holds no run.
        ValueError: the run has not finished an epoch.
    """
    run = RunFolder(run_dir)
    run.config()  # no run here, or an unreadable config: says so
    if not run.finished_an_epoch():
        raise ValueError(f"{run_dir} has not finished an epoch: there is nothing to show yet")
    state = run.state()
    record = {
        "run": str(run_dir),
        "config": json.loads(run.config_file.read_text()),
        "epoch": state.epoch,
        "best_epoch": state.best_epoch,
        "best_dice": state.best_dice,
        "history": state.history,
    }
    tests = []
    for path in Path(run_dir).glob("*.json"):
        try:
            report = read_report(path)
        except ValueError:  # config.json, split.json, reports of older versions
            continue
        if report.get("subset") == "test":
            tests.append((path.stat().st_mtime, path, report))
    if tests:
        _, path, report = max(tests, key=lambda found: found[0])
        record["test"] = report
        record["test_file"] = path.name
    return record


class _Pictures:
    """Where the page's pictures come from and how it refers to them."""

    def __init__(self, out: str | Path, assets: str | Path | None, source: Path | None = None):
        self.base = Path(out).resolve().parent
        self.source_folder = source
        self.assets = None if assets is None else Path(assets)
        if self.assets is not None:
            self.assets.mkdir(parents=True, exist_ok=True)

    def source(self, report: dict, thumbnails: Thumbnails | None) -> tuple:
        """``(Thumbnails or None, why there are no pictures)``."""
        if thumbnails is not None:
            return thumbnails, None
        folder = report.get("thumbnails")
        if folder and not Path(folder).is_dir() and self.source_folder is not None:
            if (self.source_folder / folder).is_dir():
                folder = str(self.source_folder / folder)
        if folder and Path(folder).is_dir():
            return Thumbnails(folder), None
        if folder:
            return None, (
                f"The report's pictures were in {folder}, which no longer exists; score the "
                "model again with `segkit evaluate --assets DIR`."
            )
        return None, (
            "This report holds no pictures of its cases: they are drawn while "
            "`segkit evaluate` has the predicted masks in memory (its --html or --assets), "
            "and this evaluation was run without either. The scores below are complete."
        )

    def address(self, pictures: Thumbnails, name: str, embed: bool) -> str | None:
        """A data URI (``embed``), a link into the assets folder, or into the report's own
        thumbnails folder; None when the picture cannot be shown."""
        if self.assets is not None:
            target = self.assets / name
            if pictures.folder is None or pictures.folder.resolve() != self.assets.resolve():
                png = pictures.read(name)
                if png is None:
                    return None
                with atomic_path(target) as tmp:
                    Path(tmp).write_bytes(png)
            return self._link(target)
        if embed:
            png = pictures.read(name)
            return None if png is None else _data_uri(png, "image/png")
        if pictures.folder is not None and (pictures.folder / name).is_file():
            return self._link(pictures.folder / name)
        return None

    def _link(self, path: Path) -> str:
        return quote(Path(os.path.relpath(path.resolve(), self.base)).as_posix())


def _evaluation_view(
    report: dict, pointer: str, pictures: _Pictures, thumbnails: Thumbnails | None = None
) -> dict:
    """Everything the template shows of one report, each number with its JSON pointer."""
    images = report["images"]
    volumes = bool(report.get("volumes"))
    order = _worst_first(images)
    groups = _groups(report)
    source, no_pictures = pictures.source(report, thumbnails)
    view = {
        "report": report,
        "pointer": pointer,
        "summary": _summary_rows(report, pointer),
        "settings": _settings(report, pointer),
        "volumes": volumes,
        "group_name": _group_name(report) if groups else None,
        "groups": groups,
        "classes": list(report.get("classes", {})),
        "distribution_plot": _data_uri(_png(_distribution_figure(report)), "image/png"),
        "size_plot": _size_plot(report),
        "rows_left_out": max(0, len(order) - TABLE_ROWS),
        "no_pictures": no_pictures,
        "cards": [],
        "pictures_left_out": 0,
    }
    links: dict[int, str] = {}
    if source is not None:
        if volumes:
            view["cards"], view["pictures_left_out"] = _volume_cards(
                report, pointer, source, pictures
            )
        else:
            view["cards"], links, view["pictures_left_out"] = _case_cards(
                report, pointer, order, source, pictures
            )
    view["rows"] = [
        {**_case_row(report, i, pointer), "link": links.get(i)} for i in order[:TABLE_ROWS]
    ]
    return view


def _worst_first(images: list[dict]) -> list[int]:
    """Indices of the images by Dice, lowest first; images without a Dice (no class in
    either mask) last."""
    return sorted(
        range(len(images)),
        key=lambda i: (images[i]["dice"] is None, images[i]["dice"] or 0.0, i),
    )


def _group_name(report: dict) -> str:
    """What the page groups cases by: each volume of a volume report, else the tumour types
    (labels) where the data has them, else the patients where it knows them."""
    if report.get("volumes"):
        return "volume"
    if report.get("by_label"):
        return "tumour type"
    return "patient"


def _group_of(report: dict, entry: dict) -> str:
    key = "label" if _group_name(report) == "tumour type" else "patient"
    return entry.get(key) or ""


def _groups(report: dict) -> list[str]:
    """The groups of `_group_name`, in the report's order; none when it knows no groups."""
    if report.get("volumes"):
        return [v["case"] for v in report["volumes"]]
    if report.get("by_label"):
        return list(report["by_label"])
    return list(dict.fromkeys(e["patient"] for e in report["images"] if e.get("patient")))


def _summary_rows(report: dict, pointer: str) -> list[dict]:
    rows = [{"name": "all", "pointer": pointer, "scores": report}]
    for name, values in report.get("classes", {}).items():
        kind = "region" if "regions" in report else "class"
        rows.append(
            {"name": f"{kind} {name}", "pointer": _join(pointer, "classes", name), "scores": values}
        )
    for name, values in report.get("by_label", {}).items():
        rows.append(
            {
                "name": f"{name} images",
                "pointer": _join(pointer, "by_label", name),
                "scores": values,
            }
        )
    return rows


def _settings(report: dict, pointer: str) -> list[tuple[str, object, str]]:
    """``(what, value, JSON pointer)`` of the settings that made and scored the masks."""
    keys = [
        ("model", "model"),
        ("weights SHA-256", "weights_sha256"),
        ("precision", "precision"),
        ("threshold", "threshold"),
        ("data", "data"),
        ("split manifest", "manifest"),
        ("subset", "subset"),
        ("scored at", "resolution"),
        ("segkit", "segkit"),
    ]
    found = [(what, report[key], _join(pointer, key)) for what, key in keys if key in report]
    for key, value in report.get("inference", {}).items():
        if key != "threshold":
            found.append((f"inference: {key}", value, _join(pointer, "inference", key)))
    for name, labels in report.get("regions", {}).items():
        found.append((f"region {name}", labels, _join(pointer, "regions", name)))
    return found


def _case_row(report: dict, index: int, pointer: str) -> dict:
    entry = report["images"][index]
    present = [name for name, s in entry.get("classes", {}).items() if s["dice"] is not None]
    return {
        "index": index,
        "entry": entry,
        "pointer": _join(pointer, "images", str(index)),
        "group": _group_of(report, entry),
        "classes": present,
    }


def _case_cards(report, pointer, order, source, pictures) -> tuple[list[dict], dict, int]:
    """Cards of the pictured cases, worst first (every one with assets, else a chosen few),
    links to the pictures of the others where they are in a folder, and how many of them
    the page does not show."""
    images = report["images"]
    pictured = [i for i in order if images[i].get("thumbnail")]
    chosen = set(pictured) if pictures.assets is not None else _choose(report, pictured)
    cards, links = [], {}
    for index in pictured:
        address = pictures.address(source, images[index]["thumbnail"], index in chosen)
        if address is None:
            continue
        if index not in chosen:
            links[index] = address
            continue
        row = _case_row(report, index, pointer)
        row["pictures"] = [{"src": address, "caption": images[index]["key"]}]
        cards.append(row)
    return cards, links, len(pictured) - len(cards)


def _choose(report: dict, pictured: list[int]) -> set[int]:
    """The cases embedded in a page without assets: the worst, the worst of each group and
    the best, at most `EMBEDDED_CASES`."""
    images = report["images"]
    chosen: list[int] = []
    by_group: dict[str, list[int]] = {}
    for index in pictured:
        by_group.setdefault(_group_of(report, images[index]), []).append(index)
    wanted = pictured[-BEST_CASES:][::-1]
    for members in by_group.values():
        wanted += members[:WORST_PER_GROUP]
    wanted += pictured
    for index in wanted:
        if index not in chosen and len(chosen) < EMBEDDED_CASES:
            chosen.append(index)
    return set(chosen)


def _volume_cards(report, pointer, source, pictures) -> tuple[list[dict], int]:
    """One card per volume, worst 3-D Dice first, with a few slices through its lesion."""
    images = report["images"]
    records = report["volumes"]
    order = sorted(
        range(len(records)),
        key=lambda v: (records[v]["dice"] is None, records[v]["dice"] or 0.0, v),
    )
    embed_volumes = EMBEDDED_CASES // SLICES_PER_VOLUME
    cards, left_out = [], 0
    for rank, v in enumerate(order):
        case = records[v]["case"]
        slices = [
            i for i, e in enumerate(images) if e.get("patient") == case and e.get("thumbnail")
        ]
        lesion = [i for i in slices if images[i]["true_pixels"] > 0] or slices
        lesion.sort(key=lambda i: images[i].get("slice", i))
        picked = sorted(
            {lesion[int(q * (len(lesion) - 1))] for q in np.linspace(0.2, 0.8, SLICES_PER_VOLUME)}
            if lesion
            else set(),
            key=lambda i: images[i].get("slice", i),
        )
        embed = pictures.assets is not None or rank < embed_volumes
        shown = []
        for i in picked:
            address = pictures.address(source, images[i]["thumbnail"], embed)
            if address is not None and (embed or pictures.assets is not None):
                shown.append(
                    {"src": address, "caption": f"slice {images[i].get('slice')}", "index": i}
                )
        if picked and not shown:
            left_out += 1
            continue
        cards.append(
            {
                "volume": records[v],
                "pointer": _join(pointer, "volumes", str(v)),
                "group": case,
                "classes": [],
                "pictures": shown,
                "slices": [_case_row(report, s["index"], pointer) for s in shown],
            }
        )
    return cards, left_out


def _distribution_figure(report: dict):
    """Dice per case as a strip plot: all cases, then per class, per tumour type or per volume,
    each row's mean (from the report) marked."""
    from matplotlib.figure import Figure

    images = report["images"]
    colour_of = _group_colours(report)
    rows: list[tuple[str, list[float], float | None, tuple]] = []
    if report.get("volumes"):
        volumes = [v["dice"] for v in report["volumes"]]
        rows.append(("volumes (3-D)", volumes, report.get("volume_dice_mean"), ALL_COLOUR))
        rows.append(("all slices", [e["dice"] for e in images], report["dice_mean"], ALL_COLOUR))
        if len(report["volumes"]) <= 12:
            for volume in report["volumes"]:
                case = volume["case"]
                values = [e["dice"] for e in images if e.get("patient") == case]
                rows.append((f"slices of {case}", values, None, colour_of[case]))
    else:
        label = "mean over classes" if "classes" in report else "all images"
        rows.append((label, [e["dice"] for e in images], report["dice_mean"], ALL_COLOUR))
        for k, (name, summary) in enumerate(report.get("classes", {}).items(), start=1):
            values = [e["classes"][name]["dice"] for e in images]
            rows.append((f"class {name}", values, summary["dice_mean"], class_colour(k)))
        for name, summary in report.get("by_label", {}).items():
            values = [e["dice"] for e in images if e.get("label") == name]
            rows.append((f"{name} images", values, summary["dice_mean"], colour_of[name]))
        patients = _groups(report) if _group_name(report) == "patient" else []
        if len(patients) <= 12:
            for patient in patients:
                values = [e["dice"] for e in images if e.get("patient") == patient]
                rows.append((f"patient {patient}", values, None, colour_of[patient]))
    figure = Figure(figsize=(8, 0.55 * len(rows) + 1.1), constrained_layout=True)
    axis = figure.subplots()
    jitter = np.random.default_rng(0)
    for position, (_, values, mean, rgb) in enumerate(rows):
        present = np.array([v for v in values if v is not None], dtype=float)
        spread = jitter.uniform(-0.18, 0.18, present.size)
        colour = np.array(rgb) / 255
        axis.scatter(present, position + spread, s=9, alpha=0.6, color=colour, linewidths=0)
        if mean is not None:
            axis.plot([mean, mean], [position - 0.32, position + 0.32], color="black", lw=2)
    axis.set_yticks(range(len(rows)), [row[0] for row in rows])
    axis.invert_yaxis()
    axis.set_xlim(-0.02, 1.02)
    axis.set_xlabel("Dice per case (black bar: the mean the report gives)")
    axis.grid(axis="x", alpha=0.3)
    return figure


def _group_colours(report: dict) -> dict[str, tuple[int, int, int]]:
    """One colour per group, the same in every plot; ``""`` (no group) gets `ALL_COLOUR`."""
    colours = {group: _COLOURS[k % len(_COLOURS)] for k, group in enumerate(_groups(report))}
    return colours or {"": ALL_COLOUR}


def _size_plot(report: dict) -> dict:
    """Dice against the true mask's size (small lesions are where models fail)."""
    from matplotlib.figure import Figure

    images = report["images"]
    shown = [e for e in images if e["true_pixels"] > 0 and e["dice"] is not None]
    figure = Figure(figsize=(8, 3.6), constrained_layout=True)
    axis = figure.subplots()
    colour_of = _group_colours(report)
    by_group: dict[str, list[dict]] = {}
    for entry in shown:  # a group the report does not list (a partial volume): grey, "other"
        group = _group_of(report, entry)
        by_group.setdefault(group if group in colour_of else "other", []).append(entry)
    groups = [g for g in [*colour_of, "other"] if g in by_group]
    for group in groups:
        members = by_group[group]
        colour = np.array(colour_of.get(group, ALL_COLOUR)) / 255
        axis.scatter(
            [e["true_pixels"] for e in members],
            [e["dice"] for e in members],
            s=12,
            alpha=0.7,
            color=colour,
            linewidths=0,
            label=group or "all",
        )
    if shown:
        axis.set_xscale("log")
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel("true mask size (pixels of the image as scored; log scale)")
    axis.set_ylabel("Dice")
    axis.grid(alpha=0.3)
    if len(groups) > 1 and len(groups) <= 12:
        axis.legend(fontsize=8, markerscale=1.5)
    return {
        "src": _data_uri(_png(figure), "image/png"),
        "left_out": len(images) - len(shown),
    }


def _run_view(record: dict) -> dict:
    history = record["history"]
    figure = curves_figure(history)
    for axis in figure.axes:
        axis.axvline(record["best_epoch"], color="black", lw=1, ls=":")
    columns = list(history[0]) if history else []
    config = record["config"]
    return {
        "record": record,
        "curves": _data_uri(_png(figure), "image/png"),
        "columns": columns,
        "settings": sorted(config.get("config", {}).items()),
        "versions": [(k, v) for k, v in config.items() if k != "config"],
    }


def number(value, digits: int | str = 3) -> str:
    """How the page writes a number of the report: ``digits`` decimals (``"g"``: four
    significant digits), integers as they are, a dash for a value the report leaves null."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}" if digits == "g" else f"{value:.{digits}f}"


def _join(pointer: str, *keys: str) -> str:
    """A JSON pointer (RFC 6901) one or more keys further down."""
    return pointer + "".join("/" + k.replace("~", "~0").replace("/", "~1") for k in keys)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _data_uri(content: bytes, kind: str) -> str:
    return f"data:{kind};base64,{base64.b64encode(content).decode('ascii')}"


def _css(colour: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


def _template():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    environment = Environment(
        loader=PackageLoader("segkit", "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["number"] = number
    environment.filters["pointer"] = lambda pointer, *keys: _join(pointer, *map(str, keys))
    environment.filters["json"] = lambda value: json.dumps(value)
    return environment.get_template("page.html.j2")
