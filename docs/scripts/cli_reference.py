"""Write docs/cli.md: the ``--help`` text of every ``segkit`` command.

Run it after changing the command line; ``tests/test_docs.py`` fails while the page is stale:

    python docs/scripts/cli_reference.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

PAGE = Path(__file__).resolve().parents[1] / "cli.md"

INTRO = """\
# Command line

`segkit` is a thin layer over the Python API: every command calls one function of it.
Errors a user can fix (a missing file, an unknown model, bad input, a missing or mistyped
option) print one line and exit with status 2; `segkit --debug COMMAND ...` shows the full
traceback instead.

This page is generated from the commands' own help by `docs/scripts/cli_reference.py`.
"""


def _commands(group: click.Group, ctx: click.Context, path: tuple[str, ...]):
    """Yield ``(words, command, context)`` for every command below ``group``, depth first."""
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        sub = click.Context(command, info_name=name, parent=ctx)
        yield (*path, name), command, sub
        if isinstance(command, click.Group):
            yield from _commands(command, sub, (*path, name))


def render() -> str:
    """The page's Markdown."""
    from segkit.cli import cli

    root = click.Context(cli, info_name="segkit", terminal_width=100, max_content_width=100)
    sections = [INTRO, "## segkit\n", f"```text\n{cli.get_help(root)}\n```\n"]
    for words, command, ctx in _commands(cli, root, ()):
        ctx.terminal_width = ctx.max_content_width = 100
        title = " ".join(("segkit", *words))
        sections.append(f"## {title}\n")
        sections.append(f"```text\n{command.get_help(ctx)}\n```\n")
    return "\n".join(sections)


def main() -> int:
    PAGE.write_text(render())
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
