"""The ``nvtopo`` command line. Every subcommand has ``--format`` with ``json`` among its values.

Errors a user can cause (bad input, impossible requests) print one line to stderr and exit 1;
usage mistakes exit 2; nothing prints a traceback for them.
"""

from __future__ import annotations

import sys
import warnings

import click

from nvtopo._core import __version__
from nvtopo.cli.allocator import allocator
from nvtopo.cli.compute_domain import compute_domain
from nvtopo.cli.doctor import doctor
from nvtopo.cli.dump import dump
from nvtopo.cli.imex import imex
from nvtopo.cli.kubelet_plugin import kubelet_plugin
from nvtopo.cli.launch import launch
from nvtopo.cli.place import place
from nvtopo.cli.publish import publish
from nvtopo.cli.serve import serve
from nvtopo.cli.slices import claim, slices
from nvtopo.cli.systems import systems
from nvtopo.exceptions import NvtopoError, NvtopoWarning

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nvtopo")
def cli() -> None:
    """NVLink/IMEX topology manager: see, place and publish GPU topology."""


cli.add_command(dump)
cli.add_command(systems)
cli.add_command(place)
cli.add_command(slices)
cli.add_command(claim)
cli.add_command(publish)
cli.add_command(compute_domain)
cli.add_command(imex)
cli.add_command(kubelet_plugin)
cli.add_command(launch)
cli.add_command(doctor)
cli.add_command(serve)
cli.add_command(allocator)


def _show_warning(message: Warning | str, *_args: object, **_kwargs: object) -> None:
    click.echo(f"nvtopo: warning: {message}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status (used by the ``nvtopo`` console script)."""
    with warnings.catch_warnings():
        # Input read with something missing is said in one line, like an error.
        warnings.simplefilter("always", NvtopoWarning)
        warnings.showwarning = _show_warning
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    try:
        # A command ends early with click's Exit(code) where it has its own exit status
        # (`imex check`, an interrupted apply); click hands that code back here.
        code = cli.main(args=argv, prog_name="nvtopo", standalone_mode=False)
    except NvtopoError as exc:
        click.echo(f"nvtopo: error: {exc}", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("nvtopo: aborted", err=True)
        return 130
    except click.ClickException as exc:
        click.echo(f"nvtopo: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        click.echo("nvtopo: interrupted", err=True)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
