"""Run a documentation page's code as a reader would, in a fresh process and folder.

The rules, by fence of each code block, top to bottom:

* ```` ```python ````: executed; every block of a page shares one namespace.
* ```` ```bash ````: run with ``bash -e`` (``segkit`` and ``pip`` are the current environment's).
* a block with ``title="some/path"`` (``` ```toml title="tinynet/pyproject.toml" ```): written to
  that file, relative to the working folder, and not executed.
* any other fence (``text``, ``console``, ``json``, ...) is shown only: output and illustration.
* ``<!-- skip -->`` on the line before a block: shown only.

Data is found through ``SEGKIT_SHARED_DATA`` (default ``../shared/data``), as in the pages.

    python docs/scripts/run_tutorials.py docs/tutorials/onnx.md [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent
FENCE = re.compile(
    r"^(?P<skip><!-- skip -->\n)?```(?P<lang>[\w+-]*)(?P<info>[^\n]*)\n(?P<body>.*?)^```[ \t]*$",
    re.DOTALL | re.MULTILINE,
)
TITLE = re.compile(r'title="([^"]+)"')


@dataclass
class Block:
    """One code block of a page."""

    kind: str  # "python", "bash" or "file"
    body: str
    line: int
    path: str | None = None


def blocks(page: Path) -> list[Block]:
    """The runnable blocks of ``page`` in order (see the module docstring for the rules)."""
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        if match["skip"]:
            continue
        line = text.count("\n", 0, match.start()) + 1
        title = TITLE.search(match["info"])
        if title:
            found.append(Block("file", match["body"], line, title.group(1)))
        elif match["lang"] in ("python", "bash"):
            found.append(Block(match["lang"], match["body"], line))
    return found


def _program(page: Path) -> str:
    """A Python program that runs the page's blocks in order, naming the failing line."""
    steps = [(b.kind, b.body, b.line, b.path) for b in blocks(page)]
    return f"""
import os, subprocess, sys, time, traceback
from pathlib import Path
namespace = {{"__name__": "__main__"}}
START = time.perf_counter()
for kind, body, line, path in {steps!r}:
    where = f"{page.name}, block at line {{line}}"
    if kind == "file":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(body)
        continue
    print(f"--- {{where}} ({{kind}}) at {{time.perf_counter() - START:.1f}} s", flush=True)
    if kind == "bash":
        if subprocess.run(["bash", "-e", "-c", body]).returncode:
            sys.exit(f"{{where}}: command failed")
        continue
    try:
        exec(compile(body, where, "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        sys.exit(f"{{where}}: failed")
"""


def run_page(page: Path, workdir: Path, data: Path | None = None, timeout: float = 600):
    """Run ``page``'s blocks in ``workdir`` in a fresh Python process; return the result.

    Plugins that a page pip-installs go to ``workdir/site`` (on the process' ``PYTHONPATH``),
    never into the current environment.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    site = workdir / "site"
    site.mkdir(exist_ok=True)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(site),
        "PIP_TARGET": str(site),
        "PIP_NO_INDEX": "1",
        "PIP_NO_DEPS": "1",
        "PIP_NO_BUILD_ISOLATION": "0",  # pip reads "0" here as: do not isolate the build
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_QUIET": "1",
        "SEGKIT_CACHE": str(workdir / "cache"),
        "MPLBACKEND": "Agg",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "tensorflow"),
    }
    if data is not None:
        env["SEGKIT_SHARED_DATA"] = str(data)
    return subprocess.run(
        [sys.executable, "-c", _program(page)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--keep", type=Path, help="Run in this folder and keep what it writes.")
    parser.add_argument(
        "--data",
        type=Path,
        default=os.environ.get("SEGKIT_SHARED_DATA", ROOT.parent / "shared" / "data"),
        help="The shared data folder (default: $SEGKIT_SHARED_DATA, else ../shared/data).",
    )
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="segkit-docs-"))
    result = run_page(args.page.resolve(), workdir.resolve(), args.data.resolve())
    print(result.stdout, end="")
    print(result.stderr, end="", file=sys.stderr)
    print(f"ran in {workdir}", file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
