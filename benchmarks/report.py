"""Run the whole benchmark suite and write its results as Markdown tables.

::

    python -m benchmarks.report            # full run, rewrites the table in docs/benchmarks.md
    python -m benchmarks.report --quick    # smoke test: 64x64, fewer rows, prints the table
    python -m benchmarks.report --no-run   # re-render the last run's JSON
    python -m benchmarks.report -- -k onnx # extra arguments after -- go to pytest

Results are grouped by pytest-benchmark ``group``; each row's time is compared with the
group's reference row. A benchmark marks itself as the reference with
``benchmark.extra_info["baseline"] = True`` (or a name containing "baseline" or "reference").
These ``extra_info`` keys are shown when present: ``label`` (the row's name), ``time_s``
(seconds per call measured by the benchmark itself, used instead of pytest-benchmark's mean),
``images_per_s``, ``peak_rss_mib`` and ``rss_increase_mib``, ``params``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS_PAGE = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / ".benchmarks"
START, END = "<!-- table:start -->", "<!-- table:end -->"
PACKAGES = (
    "segkit",
    "keras",
    "tensorflow-cpu",
    "tensorflow",
    "torch",
    "jax",
    "jaxlib",
    "onnxruntime",
    "tf2onnx",
    "monai",
    "numpy",
    "pytest-benchmark",
)
QUICK_SIZE = "64"
#: What --quick leaves out of the model benchmarks: resunet, attention_unet, unet_plus_plus,
#: the MONAI peers, batch 1 and the shipped model's CPU inference (fixed at 256x256).
QUICK_SELECTION = (
    "not resunet and not monai_ and not b1 and not attention and not plus_plus "
    "and not cpu_inference"
)
#: extra_info keys with a column of their own, or not worth a reader's time.
SHOWN_INFO = {
    "label",
    "baseline",
    "time_s",
    "images_per_s",
    "peak_rss_mib",
    "rss_increase_mib",
    "params",
    "batch",
    "size",
    "data_format",
    "device",
}


def run_suite(json_path: Path, junit_path: Path, quick: bool, pytest_args: list[str]) -> int:
    """Run ``pytest benchmarks`` once; returns pytest's exit code."""
    env = dict(os.environ)
    if quick:
        env["SEGKIT_BENCH_SIZE"] = QUICK_SIZE
        if "-k" not in pytest_args:
            pytest_args = ["-k", QUICK_SELECTION, *pytest_args]
    command = [
        sys.executable,
        "-m",
        "pytest",
        "benchmarks",
        "--benchmark-only",
        f"--benchmark-json={json_path}",
        f"--junitxml={junit_path}",
        "--benchmark-quiet",
        "-p",
        "no:cacheprovider",
        "-q",
        *pytest_args,
    ]
    print("$", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def find_baseline(rows: list[dict]) -> dict | None:
    """The group's reference row: the one with ``extra_info["baseline"]`` true; else the one
    named "baseline" or "reference"; else, when all rows but one are named "segkit", that one
    (segkit's function beside the library it replaces). None if nothing marks one."""
    for marked in (
        lambda b: b.get("extra_info", {}).get("baseline") is True,
        lambda b: re.search(r"baseline|reference", b["name"], re.IGNORECASE),
        lambda b: "segkit" not in b["name"].lower(),
    ):
        found = [b for b in rows if marked(b)]
        if len(found) == 1 and len(rows) > 1:
            return found[0]
    return None


def seconds(bench: dict) -> float:
    """Seconds per call: the benchmark's own ``time_s`` if it recorded one, else the mean."""
    return bench.get("extra_info", {}).get("time_s", bench["stats"]["mean"])


def format_time(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value * 1e9:.3g} ns"


def format_memory(info: dict) -> str:
    if "peak_rss_mib" not in info:
        return ""
    text = f"{info['peak_rss_mib']:,.0f}"
    if "rss_increase_mib" in info:
        text += f" (+{info['rss_increase_mib']:,.0f})"
    return text


def grouped(benchmarks: list[dict]) -> dict[str, list[dict]]:
    """Benchmarks by group, groups in run order, the reference row first in each."""
    groups: dict[str, list[dict]] = {}
    for bench in benchmarks:
        groups.setdefault(bench.get("group") or "(no group)", []).append(bench)
    return {
        name: sorted(rows, key=lambda b: b is not find_baseline(rows))
        for name, rows in groups.items()
    }


def notes(info: dict) -> str:
    """The ``extra_info`` values this table has no column for, as ``key=value`` pairs."""
    pairs = []
    for key, value in info.items():
        if key in SHOWN_INFO or isinstance(value, bool) or not isinstance(value, int | float | str):
            continue
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        pairs.append(f"{key}={shown}".replace("|", "\\|"))
    return ", ".join(pairs)


def group_table(rows: list[dict]) -> list[str]:
    """One Markdown table: name, time, then images/s, memory and parameters where recorded,
    time relative to the baseline, and any other recorded values."""
    baseline = find_baseline(rows)
    infos = [b.get("extra_info", {}) for b in rows]
    columns = [  # (header, cell of one row); optional columns only when some row has a value
        (
            "name",
            lambda b, i: (
                f"**{i.get('label', b['name'])}** (baseline)"
                if b is baseline
                else i.get("label", b["name"])
            ).replace("|", "\\|"),
        ),
        ("time per call", lambda b, i: format_time(seconds(b))),
        ("images/s", lambda b, i: f"{i['images_per_s']:.3g}" if "images_per_s" in i else ""),
        ("peak RSS MiB (+ over imports)", lambda b, i: format_memory(i)),
        ("params", lambda b, i: f"{i['params'] / 1e6:.2f}M" if "params" in i else ""),
        (
            "time vs baseline",
            lambda b, i: f"{seconds(b) / seconds(baseline):.2f}×" if baseline else "",
        ),
        ("other recorded values", lambda b, i: notes(i)),
    ]
    table = [[cell(b, i) for b, i in zip(rows, infos, strict=True)] for _, cell in columns]
    kept = [
        n
        for n, (header, _) in enumerate(columns)
        if header in ("name", "time per call", "time vs baseline") or any(table[n])
    ]
    lines = [
        "| " + " | ".join(columns[n][0] for n in kept) + " |",
        "|" + "".join("---:|" if 0 < n < len(columns) - 1 else "---|" for n in kept),
    ]
    for row in range(len(rows)):
        lines.append("| " + " | ".join(table[n][row] for n in kept) + " |")
    return lines


def skipped_and_failed(junit_path: Path) -> list[str]:
    """``name: reason`` for each benchmark that was skipped or failed, from the JUnit XML."""
    if not junit_path.exists():
        return []
    notes = []
    for case in ET.parse(junit_path).getroot().iter("testcase"):
        for kind in ("skipped", "failure", "error"):
            element = case.find(kind)
            if element is None:
                continue
            message = (element.get("message") or "").splitlines()[0:1]
            message = message[0] if message else ""
            if "non-benchmark" in message:  # tests --benchmark-only leaves out
                continue
            notes.append(f"{case.get('name')} ({kind}): {message[:200]}")
    return notes


def cpu_name(machine: dict) -> str:
    name = machine.get("cpu", {}).get("brand_raw")
    if not name and Path("/proc/cpuinfo").exists():
        found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        name = found.group(1).strip() if found else None
    return name or platform.processor() or "unknown CPU"


def accelerator() -> str:
    if shutil.which("nvidia-smi"):
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
        if listed.returncode == 0 and listed.stdout.strip():
            return "; ".join(listed.stdout.strip().splitlines())
    return "none (CPU only)"


def versions() -> str:
    found = []
    for package in PACKAGES:
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join([f"Python {platform.python_version()}", *found])


def render(results: dict, notes: list[str], size: str, wall_s: float | None) -> str:
    """The Markdown written between the page's markers."""
    machine = results.get("machine_info", {})
    when = results.get("datetime", dt.datetime.now(dt.UTC).isoformat())[:16].replace("T", " ")
    lines = [
        f"Measured {when} UTC by `python -m benchmarks.report`"
        + (f" in {wall_s / 60:.0f} minutes" if wall_s else "")
        + ".",
        "",
        f"- Machine: {cpu_name(machine)}, {os.cpu_count()} cores"
        f" ({platform.system()} {platform.machine()}); accelerator: {accelerator()}",
        f"- Versions: {versions()}",
        f"- Model inputs: {size}x{size}x1 float32 images",
        "",
    ]
    for group, rows in grouped(results.get("benchmarks", [])).items():
        lines += [f"**{group}**", "", *group_table(rows), ""]
    if notes:
        lines += ["Not measured in this run:", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)


def replace_section(page: Path, table: str) -> None:
    """Rewrite the text between the table markers of ``page``."""
    text = page.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{page} has no {START} ... {END} section to rewrite")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    page.write_text(f"{head}{START}\n{table}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_SIZE}x{QUICK_SIZE} model inputs, only "
        f"-k '{QUICK_SELECTION}'; the docs are not changed",
    )
    parser.add_argument("--no-run", action="store_true", help="only re-render the last JSON")
    parser.add_argument(
        "--docs",
        type=Path,
        help=f"page to rewrite (default: {DOCS_PAGE.relative_to(ROOT)} for a "
        "full run, none for --quick)",
    )
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args(argv)

    RESULTS.mkdir(exist_ok=True)
    stem = "quick" if args.quick else "full"
    json_path, junit_path = RESULTS / f"{stem}.json", RESULTS / f"{stem}.junit.xml"
    code, wall_s = 0, None
    if not args.no_run:
        start = time.monotonic()
        code = run_suite(json_path, junit_path, args.quick, args.pytest_args)
        wall_s = time.monotonic() - start
    if not json_path.exists():
        print(f"no results at {json_path}", file=sys.stderr)
        return code or 1
    results = json.loads(json_path.read_text())
    size = QUICK_SIZE if args.quick else os.environ.get("SEGKIT_BENCH_SIZE", "256")
    table = render(results, skipped_and_failed(junit_path), size, wall_s)
    (RESULTS / f"{stem}.md").write_text(table, encoding="utf-8")
    print(table)
    page = args.docs or (None if args.quick else DOCS_PAGE)
    if page is not None:
        replace_section(page, table)
        print(f"table written to {page}")
    return code


if __name__ == "__main__":
    sys.exit(main())
