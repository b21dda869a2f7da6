"""The package's structure: imports go one way, in no circle, and the page that shows it is true."""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
sys.path.insert(0, str(DOCS / "scripts"))

import module_map  # noqa: E402


def test_no_module_imports_a_higher_layer():
    assert module_map.upward_imports(module_map.graph()) == []


def test_no_modules_import_each_other_in_a_circle():
    assert module_map.circles(module_map.graph()) == []


def test_every_module_has_a_layer():
    for module in module_map.graph():
        module_map.layer_of(module)  # raises LookupError, naming the module


def test_the_checks_catch_a_circle_and_an_upward_import():
    edges = {"segkit.data.samples": {"segkit.cli"}, "segkit.cli": {"segkit.data.samples"}}
    assert module_map.circles(edges) == [["segkit.cli", "segkit.data.samples"]]
    assert module_map.upward_imports(edges) == ["segkit.data.samples -> segkit.cli"]


def test_function_level_imports_count(tmp_path):
    # samples.py once imported preprocess inside a function: such imports must be seen.
    source = "def f():\n    from segkit.data.preprocess import read_pair\n"
    path = tmp_path / "probe.py"
    path.write_text(source)
    found = module_map.imports_of("segkit.probe", path, {"segkit.data.preprocess"})
    assert found == {"segkit.data.preprocess"}


def test_structure_page_is_up_to_date():
    assert (DOCS / "structure.md").read_text() == module_map.render(), (
        "docs/structure.md is stale: run `python docs/scripts/module_map.py`"
    )
