"""The built site reads as written: no list that Markdown turned into a paragraph.

A list item after a nested table or code block that is indented wrongly renders as a paragraph
holding a literal "- **Training data** ...". ``mkdocs build --strict`` does not warn about it, so
this test builds the site and reads the HTML as a browser would show it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(MKDOCS is None, reason="mkdocs is not installed (the docs extra)"),
]

# A list marker at the start of a line: "- ", "* ", "+ " or "1. ".
LIST_MARKER = re.compile(r"(?m)^[ \t]*(?:[-*+]|\d+\.)[ \t]+\S")


class Paragraphs(HTMLParser):
    """The text of every <p> of a page, tags stripped, line breaks kept."""

    def __init__(self):
        super().__init__()
        self.paragraphs: list[str] = []
        self._open: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "p":
            self._open = []

    def handle_endtag(self, tag):
        if tag == "p" and self._open is not None:
            self.paragraphs.append("".join(self._open))
            self._open = None

    def handle_data(self, data):
        if self._open is not None:
            self._open.append(data)


def list_markers_in_paragraphs(html: str) -> list[str]:
    """The paragraphs of ``html`` that hold a list marker: lists that did not render as lists."""
    parser = Paragraphs()
    parser.feed(html)
    return [text for text in parser.paragraphs if LIST_MARKER.search(text)]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [MKDOCS, "build", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_the_check_sees_a_broken_list():
    broken = "<ul><li>one<table></table></li></ul><p>Text.\n- <strong>Data</strong>: ...</p>"
    assert list_markers_in_paragraphs(broken) == ["Text.\n- Data: ..."]
    assert list_markers_in_paragraphs("<p>- starts with a dash</p>")
    fine = "<ul><li>one</li><li>two</li></ul><p>a range 1 - 2, and x - y</p>"
    assert list_markers_in_paragraphs(fine) == []


def test_no_page_shows_a_list_as_a_paragraph(site):
    broken = {}
    for page in sorted(site.rglob("*.html")):
        found = list_markers_in_paragraphs(page.read_text())
        if found:
            broken[str(page.relative_to(site))] = [text[:120] for text in found]
    assert not broken, f"list items rendered inside paragraphs: {broken}"
