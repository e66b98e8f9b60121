"""``python -m engine PATH`` runs a short KV session on the store in PATH (see
engine/cli_demo.py); ``python -m engine COMMAND ...`` is the kvengine CLI."""

from __future__ import annotations

import sys

import click

from engine.cli import UserError, cli, error_line, main
from engine.cli_demo import run_session
from engine.errors import EngineError, StoreLockedError


def _session(path: str) -> None:
    try:
        run_session(path, click.echo)
    except StoreLockedError:
        raise UserError(
            f"the store {path} is open for writing by another process; "
            f"try `kvengine --db {path} stats` beside it"
        ) from None
    except (EngineError, OSError, ValueError) as exc:
        raise UserError(error_line(exc)) from None


def run(argv: list[str]) -> None:
    # One argument that is no command and no option names the store directory.
    if len(argv) == 1 and not argv[0].startswith("-") and argv[0] not in cli.commands:
        try:
            _session(argv[0])
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        return
    main(argv, prog_name="python -m engine")


if __name__ == "__main__":
    run(sys.argv[1:])
