"""Shared output helpers for the CLI: one rich console, JSON/YAML writers."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console

__all__ = ["console", "emit"]


def console() -> Console:
    """A console on stdout: colour on a terminal, plain text when piped."""
    return Console(soft_wrap=True, highlight=False)


def emit(doc: Any, fmt: str) -> None:
    """Write ``doc`` as JSON or YAML to stdout."""
    if fmt == "yaml":
        import yaml

        click.echo(yaml.safe_dump(doc, sort_keys=False, width=100), nl=False)
    else:
        click.echo(json.dumps(doc, indent=2))
