"""The documentation cannot rot: every tutorial runs as written, and the site builds.

Each page under docs/tutorials/ runs top to bottom in a fresh Python process inside a temporary
folder, by the rules of docs/scripts/run_tutorials.py:

* ```` ```python ```` blocks run, sharing one namespace per page; ```` ```bash ```` blocks run
  in a shell; a block with ``title="path"`` is written to that file instead;
* other fences (``text``, ``console``, ...) are output and illustration; put ``<!-- skip -->``
  on the line before a python or bash block to show it without running it.

Pages read the real data through ``SEGKIT_SHARED_DATA`` (``../shared/data`` by default) and are
skipped when the data they name is absent. Nothing here depends on the Keras backend, so these
tests are not marked ``backend``: they run once, on TensorFlow.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SEGKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT / "docs" / "scripts"))
import cli_reference  # noqa: E402
import run_tutorials  # noqa: E402

DOCS = ROOT / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))
pytestmark = pytest.mark.slow


def _needs_data(page: Path) -> list[str]:
    """The shared data folders that a page's code reads."""
    code = "".join(b.body for b in run_tutorials.blocks(page) if b.kind != "file")
    names = ("figshare-brain-tumor-256", "figshare-brain-tumor-512-sample", "lgg-mri-segmentation")
    return [name for name in names if name in code]


def test_every_tutorial_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in TUTORIALS:
        assert f"tutorials/{page.name}" in nav, f"{page.name} is missing from mkdocs.yml's nav"


def test_the_runner_reads_fences_as_documented(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nx = 1\n```\n\n```text\nnot code\n```\n\n<!-- skip -->\n```python\n"
        'raise SystemExit(1)\n```\n\n```toml title="pkg/a.toml"\nk = 1\n```\n\n'
        "```bash\necho hi\n```\n"
    )
    kinds = [(b.kind, b.path) for b in run_tutorials.blocks(page)]
    assert kinds == [("python", None), ("file", "pkg/a.toml"), ("bash", None)]


@pytest.mark.parametrize("page", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_as_written(page, tmp_path):
    for name in _needs_data(page):
        if not (SHARED_DATA / name).is_dir():
            pytest.skip(f"{page.name} needs {SHARED_DATA / name}")
    result = run_tutorials.run_page(page, tmp_path, SHARED_DATA, timeout=600)
    assert result.returncode == 0, (
        f"{page.name} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )


def test_cli_page_is_up_to_date():
    assert (DOCS / "cli.md").read_text() == cli_reference.render(), (
        "docs/cli.md is stale: run `python docs/scripts/cli_reference.py`"
    )


def test_pictures_that_pages_show_exist():
    for page in DOCS.rglob("*.md"):
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).is_file(), f"{page}: missing picture {target}"


MKDOCS = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")


@pytest.mark.skipif(MKDOCS is None, reason="mkdocs is not installed (the docs extra)")
def test_site_builds_strictly(tmp_path):
    result = subprocess.run(
        [MKDOCS, "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
