"""The `photopipe` command (Typer, with rich help).

The command groups live in `photopipe_cli.commands`, one small module each (`register(app)`); this
module assembles them, prints every `CliError` as `error: ...` on stderr with its exit code (never a
traceback for an API or usage problem), and is the console script's entry point. Modules import
their heavy dependencies inside the commands, so `photopipe --help` stays fast."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from functools import cache
from types import SimpleNamespace
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from photopipe_cli.commands import GROUPS
from photopipe_cli.errors import EXIT_CODES_HELP, CliError

HELP = """photopipe: your photo library on the photopipe service, from the command line.

Start the whole service on this machine with `make run`, then `photopipe register` and
`photopipe upload ~/Pictures`. Every command takes --json (data on stdout, messages on stderr)
and --api URL; `photopipe COMMAND --help` says more."""

EPILOG = (
    f"{EXIT_CODES_HELP}  "
    "Environment: PHOTOPIPE_API_URL (server), PHOTOPIPE_TOKEN (token, overrides the saved login), "
    "PHOTOPIPE_CONFIG_DIR / PHOTOPIPE_STATE_DIR (where settings, token and upload journal live), "
    "NO_COLOR."
)


class PhotopipeGroup(TyperGroup):
    """The root group: turns a `CliError` raised anywhere below into its message and exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as e:
            from photopipe_cli.ui import Ui

            Ui().error(e.message, e.hint)
            raise typer.Exit(int(e.code)) from None


def _version(value: bool) -> None:
    if value:
        from photopipe import __version__

        typer.echo(f"photopipe {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="photopipe",
        cls=PhotopipeGroup,
        help=HELP,
        epilog=EPILOG,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def root(
        version: Annotated[
            bool,
            typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
        ] = False,
    ) -> None:
        pass

    for name in GROUPS:
        importlib.import_module(f"photopipe_cli.commands.{name}").register(app)
    return app


app = build_app()


@cache
def command() -> Any:
    return typer.main.get_command(app)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: `sys.argv[1:]`) and return its exit code."""
    try:
        command().main(args=None if argv is None else list(argv), prog_name="photopipe", standalone_mode=True)
    except SystemExit as e:
        if e.code is None:
            return 0
        return e.code if isinstance(e.code, int) else 1
    return 0


def parse(argv: Sequence[str]) -> SimpleNamespace:
    """The parameters the command named by `argv` would receive, without running it (for tests)."""
    ctx = command().make_context("photopipe", list(argv))
    while isinstance(ctx.command, TyperGroup):
        rest = [*ctx._protected_args, *ctx.args]
        name, sub, args = ctx.command.resolve_command(ctx, rest)
        if sub is None:  # resolve_command fails with a usage error before this
            raise LookupError(f"no command {name!r}")
        ctx = sub.make_context(name or "", args, parent=ctx)
    return SimpleNamespace(**ctx.params)


if __name__ == "__main__":
    sys.exit(main())
