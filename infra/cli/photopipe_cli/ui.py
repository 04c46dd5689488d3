"""What a command prints: data on stdout (a table, or JSON with `--json`), messages on stderr.

With `--json` stdout carries exactly one JSON document (or JSON Lines for a stream, `watch`), messages
still go to stderr and nothing draws a progress bar. Progress bars are drawn only on a terminal.
Everything that comes from a user or a server (file names, messages) is printed without markup."""

from __future__ import annotations

import json
import sys
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


class Ui:
    def __init__(self, *, json_mode: bool = False) -> None:
        self.json = json_mode

    @cached_property
    def err(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, highlight=False, soft_wrap=True)

    @cached_property
    def out(self) -> Console:
        from rich.console import Console

        return Console(highlight=False)

    @property
    def interactive(self) -> bool:
        """A person at a terminal can answer a question (stdin and stderr are terminals)."""
        return sys.stdin.isatty() and self.err.is_terminal

    @property
    def progress(self) -> bool:
        """Draw progress bars: not with `--json`, and only on a terminal."""
        return not self.json and self.err.is_terminal

    # ------------------------------------------------------------------------------------- messages
    def info(self, message: str) -> None:
        self.err.print(message, markup=False)

    def success(self, message: str) -> None:
        self.err.print(message, markup=False, style="green")

    def warn(self, message: str) -> None:
        self.err.print(f"warning: {message}", markup=False, style="yellow")

    def error(self, message: str, hint: str | None = None) -> None:
        self.err.print(f"error: {message}", markup=False, style="bold red")
        if hint:
            self.err.print(hint, markup=False)

    # ----------------------------------------------------------------------------------------- data
    def emit(self, data: Any) -> None:
        """The command's data as one JSON document on stdout."""
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
        sys.stdout.flush()

    def emit_line(self, data: Any) -> None:
        """One JSON Lines record on stdout (streams: `watch --json`)."""
        sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
        sys.stdout.flush()

    def fields(self, rows: list[tuple[str, Any]]) -> None:
        """`label  value` lines on stdout, labels aligned, values never cut or folded (links stay whole)."""
        rows = [(label, value) for label, value in rows if value is not None and value != ""]
        width = max((len(label) for label, _ in rows), default=0)
        for label, value in rows:
            self.out.print(f"{label:<{width}}  {value}", markup=False, highlight=False, soft_wrap=True)

    def print(self, renderable: Any) -> None:
        """A table or text for a person, on stdout."""
        self.out.print(renderable)


def plain(text: object) -> Any:
    """`text` as a rich Text: shown as it is, never read as markup."""
    from rich.text import Text

    return Text("" if text is None else str(text))


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover - the loop always returns
