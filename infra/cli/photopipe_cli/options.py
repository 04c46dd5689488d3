"""Options every user command takes, declared once (Typer reads them from each command's signature)."""

from __future__ import annotations

from typing import Annotated

import typer

JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print the result as JSON on stdout (only data; messages go to stderr, no progress bars).",
    ),
]
ApiOption = Annotated[
    str | None,
    typer.Option(
        "--api",
        metavar="URL",
        help="API server. Default: $PHOTOPIPE_API_URL, else `photopipe config set api`, else the local "
        "stack (http://127.0.0.1:3000).",
        show_default=False,
    ),
]
