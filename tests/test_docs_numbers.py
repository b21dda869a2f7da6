"""Every headline Dice that the docs and the README quote for a shipped model is the one its
weights file records.

A shipped file's header holds its held-out test scores (``test_scores``: per-image mean Dice
with its inference defaults and without them; see `segkit.models.pretrained.set_test_scores`).
A page quotes them in a sentence that names the model (```resunet.figshare```) in one of these
forms, which this test reads:

* "... `resunet.figshare` ..., 0.764 with its inference defaults, 0.742 without";
* "`resunet.figshare`, per-image Dice 0.764" or "(`unet.figshare`, 0.732)";
* a table row that starts with the model's name, in a table whose columns say "Dice with
  defaults" and "Dice without defaults".

The changelog is history (it quotes the scores of files that were later replaced) and is left
out; so is the training log, which records runs that did not ship.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from segkit.models import pretrained

ROOT = Path(__file__).resolve().parents[1]
HISTORY = {"changelog.md", "training-log.md"}
PAGES = [ROOT / "README.md"] + [
    page for page in sorted((ROOT / "docs").rglob("*.md")) if page.name not in HISTORY
]
SHIPPED = [name.split(".") for name in pretrained.available()]
NUMBER = r"\**(\d\.\d{3,4})\**"


def _sentences(text: str) -> list[str]:
    """Sentences and table rows of a Markdown page, each on one line."""
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)  # code shows commands, not claims
    rows, blocks, block = [], [], []
    for line in text.splitlines():
        if line.lstrip().startswith("|"):
            rows.append(line)
        elif not line.strip() or re.match(r"\s*(?:[-*+]|\d+\.)\s", line):
            blocks.append(" ".join(block))  # a blank line or a new list item ends a block
            block = [line.strip()]
        else:
            block.append(line.strip())
    blocks.append(" ".join(block))
    sentences = [s for b in blocks for s in re.split(r"(?<=[.;])\s+(?=[A-Z(*`])", b)]
    return sentences + rows


def _owner(sentence: str, position: int) -> str | None:
    """The shipped model named last before ``position`` in ``sentence``."""
    named = [
        (match.start(), f"{m}.{t}")
        for m, t in SHIPPED
        for match in re.finditer(rf"(?<![\w.])`{re.escape(m)}\.{t}`", sentence)
    ]
    before = [(start, name) for start, name in named if start < position]
    return max(before)[1] if before else None


def quoted_dice(text: str, name: str) -> list[tuple[str, float, str]]:
    """``(kind, value, where)`` for each headline Dice that ``text`` quotes for ``name``
    (``"resunet.figshare"``); kind is ``"with"`` or ``"without"`` the inference defaults."""
    found = []
    mention = re.compile(rf"(?<![\w.])`{re.escape(name)}`")
    header = None
    for sentence in _sentences(text):
        if sentence.lstrip().startswith("|"):
            cells = [c.strip() for c in sentence.strip().strip("|").split("|")]
            if any("Dice" in c for c in cells) and not mention.search(cells[0]):
                header = cells
            if header and mention.search(cells[0]) and len(cells) == len(header):
                for title, cell in zip(header, cells):
                    kind = "without" if "without" in title else "with" if "with " in title else None
                    kind = None if "pooled" in title else kind
                    value = re.fullmatch(NUMBER, cell)
                    if kind and "Dice" in title and value:
                        found.append((kind, float(value.group(1)), sentence))
            continue
        header = None
        patterns = {
            "with": NUMBER + r"\s+with (?:its|the) (?:inference )?defaults",
            "without": NUMBER + r"\)?,?\s+without\b",
            "lead": r"`[\w.]+`\**,\s+(?:per-image (?:mean )?Dice\s+)?" + NUMBER,
        }
        for kind, pattern in patterns.items():
            for match in re.finditer(pattern, sentence):
                where = match.end() if kind == "lead" else match.start()
                if _owner(sentence, where) == name:
                    found.append(
                        ("with" if kind == "lead" else kind, float(match.group(1)), sentence)
                    )
    return found


def test_the_reader_finds_each_form():
    text = (
        "The U-Net's (`unet.figshare`, 0.732) ships. `resunet.figshare` scores per-image mean "
        "Dice **0.764** with its inference defaults, 0.742 without.\n\n"
        "| model | Dice with defaults | Dice without defaults | GFLOPs |\n|---|---:|---:|---:|\n"
        "| `unet.figshare` | 0.731 | 0.713 | 23.9 |\n"
    )
    assert [(k, v) for k, v, _ in quoted_dice(text, "resunet.figshare")] == [
        ("with", 0.764),
        ("without", 0.742),
    ]
    assert sorted((k, v) for k, v, _ in quoted_dice(text, "unet.figshare")) == [
        ("with", 0.731),
        ("with", 0.732),
        ("without", 0.713),
    ]


@pytest.mark.parametrize("model, tag", SHIPPED, ids=[f"{m}.{t}" for m, t in SHIPPED])
def test_headline_dice_matches_the_weights_header(model, tag):
    header = pretrained.pretrained_header(model, tag)
    assert "test_scores" in header, f"{model}.{tag}'s weights file records no test scores"
    recorded = {
        "with": header["test_scores"]["dice_mean"],
        "without": header["test_scores"]["dice_mean_without_defaults"],
    }
    wrong, seen = [], 0
    for page in PAGES:
        for kind, value, where in quoted_dice(page.read_text(), f"{model}.{tag}"):
            seen += 1
            if round(recorded[kind], 3) != round(value, 3):  # pages quote 3 decimals or 4
                wrong.append(f"{page.relative_to(ROOT)}: {value} ({kind} defaults) in {where!r}")
    assert seen, f"no page quotes {model}.{tag}'s headline Dice"
    assert not wrong, f"the header records {recorded}; the docs quote:\n" + "\n".join(wrong)
