"""Options every user command takes, declared once (Typer reads them from each command's signature)."""

from __future__ import annotations

from pathlib import Path
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
TemplateOption = Annotated[
    str, typer.Option(help="Template of the running local stack (to find its state file).")
]
StateFileOption = Annotated[
    str | None,
    typer.Option(
        help="The running local stack's state file (default: .photopipe/local-stack.json beside the template).",
        show_default=False,
    ),
]

# One local photo to read (`compress IN`, `restore IN`).
PhotoIn = Annotated[
    Path,
    typer.Argument(
        metavar="IN", exists=True, dir_okay=False, readable=True, help="A photo, any accepted format."
    ),
]
