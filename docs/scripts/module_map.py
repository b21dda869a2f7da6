"""Write docs/structure.md: segkit's modules, their layers and every import between them.

The imports are read from the source (function-level imports included), so the page cannot
drift from the code; ``tests/test_structure.py`` fails while the page is stale, when an import
goes from a lower layer up to a higher one, or when modules import each other in a circle:

    python docs/scripts/module_map.py
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src"
PAGE = ROOT / "docs" / "structure.md"

#: The layers, lowest first, as (name, what it is, module prefixes). A module may import its
#: own layer and the layers below it, never one above.
LAYERS = (
    (
        "foundations",
        "files written atomically, plugin registries, progress lines, per-file work on a Ray "
        "actor pool, the backend, resizing, sliding windows, mask values and their "
        "post-processing",
        (
            "segkit._io",
            "segkit._plugins",
            "segkit.progress",
            "segkit.ray_engine",
            "segkit.backend",
            "segkit.environment",
            "segkit.resize",
            "segkit.sliding_window",
            "segkit.masks",
            "segkit.postprocess",
        ),
    ),
    ("data", "find, read, split and stream samples", ("segkit.data",)),
    (
        "building blocks",
        "encoders, architectures and their weights, losses, metrics, scores",
        (
            "segkit.encoders",
            "segkit.models",
            "segkit.weights",
            "segkit.losses",
            "segkit.metrics",
            "segkit.evaluation",
        ),
    ),
    (
        "runs and pictures",
        "a run's settings, folder and plan; overlays, case pictures and curves",
        ("segkit.runs", "segkit.planning", "segkit.visualize", "segkit.gallery"),
    ),
    (
        "jobs",
        "train a model on one device or several; load one, predict (images and volumes) and "
        "explain",
        (
            "segkit.training",
            "segkit.distribute",
            "segkit.inference",
            "segkit.volumes",
            "segkit.explain",
        ),
    ),
    (
        "reports",
        "score a model and choose its inference settings; export it; a page to look at",
        ("segkit.reports", "segkit.tuning", "segkit.exporting", "segkit.report_page"),
    ),
    ("demo", "the bundled sample, end to end", ("segkit.demo",)),
    ("command line", "a thin click layer over the API", ("segkit.cli",)),
)

INTRO = """\
# How segkit is built

segkit is a stack of layers. Data flows one way: `segkit.data` finds, reads, splits and streams
samples; models, losses, metrics and masks stand beside it; training, inference and evaluation
use them; the command line is a thin layer over the API, its train options generated from
`segkit.runs.TrainConfig`. A module imports only its own layer and the layers below it, and no
modules import each other in a circle.

This page is generated from the source by `docs/scripts/module_map.py`;
`tests/test_structure.py` fails when it is stale or when an import breaks either rule.

## How data flows

- **train** (`segkit train`, `segkit.train`): `data.find_samples` lists the pairs,
  `data.split_samples` splits them, `runs.RunFolder` writes the config and split, a
  `data.SegmentationDataset` streams decoded, augmented batches to the model from
  `models.get`, compiled with a loss from `losses.get` and `metrics.Dice`; each finished epoch
  is committed to the run folder (`RunFolder.save_epoch`), with curves drawn by
  `visualize.plot_curves`.
- **predict** (`segkit predict`, `segkit.predict`): `inference.load_model` turns a run folder
  (through `runs.RunFolder`), a `.keras` or `.onnx` file, or a name with shipped weights
  (`models.pretrained`) into a `Segmenter` with the model's `InferenceSettings`; each image is
  read by `data.read_image`, resized by `resize`, run (with its test-time augmentation copies),
  brought back to its size, thresholded by `masks.to_mask`, post-processed by
  `postprocess.apply` and written with `visualize.write_png` (and `visualize.overlay`).
- **evaluate** (`segkit evaluate`, `segkit.evaluate`): `reports.evaluate` makes the same masks
  as predict (or reads masks made elsewhere), scores each against its truth with
  `evaluation.score` and summarises per image, pooled and per label.
- **on a Ray cluster** (`--engine ray`, `engine="ray"`): predict and evaluate hand their files
  to `ray_engine.map_units`, which runs the same per-file work (`inference.write_prediction`,
  the volume's, the scores) on Ray Data actors that each load the model once; the driver
  collects statuses, timings and scores.
"""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(p): p for p in sorted((SOURCE / "segkit").rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The segkit modules that ``name`` imports anywhere in its file (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "segkit"
        ):
            # `import segkit` then `segkit.models.get(...)`: the root loads segkit.models.
            targets = [f"segkit.{node.attr}"]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from segkit import data` imports the module segkit.data; `from x import name`
            # imports x.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target.startswith("segkit.") and target not in known and "." not in target[7:]:
                continue  # an attribute of the root such as segkit.__version__
            while target and target not in known:
                target = target.rpartition(".")[0]
            # The package root only loads submodules on first use; it is no layer of its own.
            if target and target != "segkit" and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    """``{module: modules it imports}`` for the whole package."""
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items() if name != "segkit"}


def layer_of(module: str) -> int:
    for index, (_, _, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise LookupError(f"{module} belongs to no layer: add it to LAYERS in {Path(__file__).name}")


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    """Imports from a lower layer up to a higher one, as ``"a -> b"``."""
    return [
        f"{source} -> {target}"
        for source, targets in sorted(edges.items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(source)
    ]


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or through others (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _summary(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return " ".join(doc.split("\n\n")[0].split())


def render() -> str:
    """The page's Markdown."""
    edges = graph()
    paths = modules()
    sections = [INTRO, "## The layers, top to bottom\n"]
    lines = ["```mermaid", "flowchart TD"]
    for index, (name, what, _) in enumerate(LAYERS):
        lines.append(f'    L{index}["{name}: {what}"]')
    layer_edges = sorted(
        {
            (layer_of(s), layer_of(t))
            for s, ts in edges.items()
            for t in ts
            if layer_of(s) != layer_of(t)
        }
    )
    lines += [f"    L{source} --> L{target}" for source, target in reversed(layer_edges)]
    lines.append("```\n")
    sections.append("\n".join(lines))
    for index in reversed(range(len(LAYERS))):
        name, what, _ = LAYERS[index]
        sections.append(f"### {name}\n\n{what[0].upper()}{what[1:]}.\n")
        rows = ["| module | what it is | imports |", "|---|---|---|"]
        for module in sorted(m for m in edges if layer_of(m) == index):
            imported = ", ".join(f"`{t}`" for t in sorted(edges[module])) or "nothing of segkit"
            rows.append(f"| `{module}` | {_summary(paths[module])} | {imported} |")
        sections.append("\n".join(rows) + "\n")
    return "\n".join(sections)


def main() -> None:
    PAGE.write_text(render())
    problems = upward_imports(graph()) + [" <-> ".join(c) for c in circles(graph())]
    for problem in problems:
        print(f"layering: {problem}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
