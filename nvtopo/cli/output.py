"""Shared output helpers for the CLI: one rich console, JSON/YAML writers."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
from rich.console import Console

__all__ = ["UNCUT_WIDTH", "console", "emit", "format_option", "output_file_option", "render"]

F = TypeVar("F", bound=Callable[..., Any])


#: The width given to tables that do not go to a terminal: wide enough never to cut a cell
#: (a pipe, a file or a CI log has no width to fit; a cut clique id is a lost clique id).
UNCUT_WIDTH = 10_000


def console() -> Console:
    """A console on stdout: colour on a terminal, plain uncut text when piped.

    On a terminal, tables fit its width; anywhere else (``| cat``, a file, a CI log) they
    keep their natural width, as kubectl's do.
    """
    con = Console(soft_wrap=True, highlight=False)
    if con.is_terminal:
        return con
    return Console(soft_wrap=True, highlight=False, width=UNCUT_WIDTH)


def format_option(
    choices: Sequence[str], *, default: str, help: str = "output format"
) -> Callable[[F], F]:
    """The ``--format``/``-o`` option every subcommand has (its value arrives as ``fmt``).

    ``-o`` is its short form, as in kubectl (``-o json``, ``-o yaml``); a file to write is
    named by :data:`output_file_option` (``--output-file``).
    """
    return click.option(
        "--format",
        "-o",
        "fmt",
        type=click.Choice(list(choices)),
        default=default,
        show_default=True,
        help=help,
    )


def output_file_option(help: str) -> Callable[[F], F]:
    """``--output-file PATH`` (value ``output``): write there instead of standard output.

    Not ``-o``, which is ``--format`` (kubectl's meaning).
    """
    return click.option(
        "--output-file",
        "output",
        type=click.Path(dir_okay=False),
        default=None,
        help=help,
    )


def render(doc: Any, fmt: str) -> str:
    """``doc`` as JSON or YAML text, ending in a newline."""
    if fmt == "yaml":
        import yaml

        text: str = yaml.safe_dump(doc, sort_keys=False, width=100)
        return text
    return json.dumps(doc, indent=2) + "\n"


def emit(doc: Any, fmt: str) -> None:
    """Write ``doc`` as JSON or YAML to stdout."""
    click.echo(render(doc, fmt), nl=False)
