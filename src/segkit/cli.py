"""The ``segkit`` command line: a thin click layer over the Python API.

Errors a user can fix (a missing file, an unknown model, bad input) print one line and exit
with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys

import click

USER_ERRORS = (
    ValueError,
    KeyError,
    FileNotFoundError,
    NotADirectoryError,
    PermissionError,
    OSError,
)


class _Group(click.Group):
    """Turns user errors into one clear line and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            if ctx.find_root().params.get("debug"):
                raise
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            click.echo(f"segkit: error: {message}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="segkit")
def cli(debug: bool) -> None:
    """segkit: medical image segmentation on Keras 3."""


@cli.command()
def info() -> None:
    """Print segkit, Keras and backend versions and the devices in use."""
    from segkit.environment import describe_environment

    for key, value in describe_environment().items():
        click.echo(f"{key:>16}: {value}")


@cli.command()
@click.argument("pattern", default="*")
def models(pattern: str) -> None:
    """List registered architectures (optionally matching a wildcard PATTERN)."""
    import segkit
    from segkit import weights

    for name in segkit.models.list(pattern):
        tags = ", ".join(t.split(".", 1)[1] for t in weights.available(name))
        suffix = f"  [weights: {tags}]" if tags else ""
        click.echo(f"{name:<18} {segkit.models.describe(name)}{suffix}")


def main() -> None:
    """Entry point of the ``segkit`` console script."""
    # TensorFlow's C++ start-up chatter buries the output of a short command.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cli(prog_name="segkit")


if __name__ == "__main__":
    main()
