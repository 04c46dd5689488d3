"""`photopipe compress IN`: the upload compression, offline, on one file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from photopipe_cli.commands.upload import MaxSide
from photopipe_cli.options import JsonOption, PhotoIn


def register(app: typer.Typer) -> None:
    app.command("compress")(compress)


def compress(
    source: PhotoIn,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            metavar="OUT",
            help="Where to write the JPEG (- for stdout). Default: IN's name with _compressed.jpg, beside it.",
            show_default=False,
        ),
    ] = None,
    max_side: MaxSide = 1920,
    max_kb: Annotated[
        int | None,
        typer.Option(
            "--max-kb",
            min=5,
            help="Size budget in kilobytes (1 KB = 1000 bytes). Default 400.",
            show_default=False,
        ),
    ] = None,
    quality: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=100,
            help="Encode at exactly this JPEG quality instead of searching for the budget.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists.")] = False,
    json_: JsonOption = False,
) -> None:
    """Compress a photo to a size budget, offline.

    What `upload --compress` does, on one file and with no server.

    The photo is turned upright (EXIF orientation), shrunk so that its longest side is at most
    --max-side (never enlarged), and encoded at the highest JPEG quality that fits --max-kb, found by
    binary search; if even quality 40 is too big, it is made smaller until it fits. A JPEG already
    upright and within both limits is kept as it is."""
    import sys

    from photopipe_cli.compression import DEFAULT_MAX_KB
    from photopipe_cli.compression import compress as run
    from photopipe_cli.errors import CliError, UsageProblem
    from photopipe_cli.ui import Ui, human_bytes

    ui = Ui(json_mode=json_)
    if quality is not None and max_kb is not None:
        raise UsageProblem(
            "give --max-kb (search the quality for a budget) or --quality (a fixed one), not both"
        )
    to_stdout = output is not None and str(output) == "-"
    if to_stdout and json_:
        raise UsageProblem("-o - writes the JPEG to stdout; it cannot also carry --json")
    target = output or source.with_name(f"{source.stem}_compressed.jpg")
    if not to_stdout and target.exists() and not force:
        raise CliError(f"{target} already exists", hint="Give another -o OUT, or --force to overwrite it.")
    result = run(
        source.read_bytes(),
        max_side=max_side,
        max_kb=None if quality is not None else (max_kb or DEFAULT_MAX_KB),
        quality=quality,
    )
    if to_stdout:
        sys.stdout.buffer.write(result.data)
        sys.stdout.buffer.flush()
        return
    target.write_bytes(result.data)
    if json_:
        ui.emit({"input": str(source), "output": str(target), **result.describe()})
        return
    how = "kept as it is (already within the limits)" if result.kept_original else f"quality {result.quality}"
    ui.success(
        f"{source} {human_bytes(result.source_bytes)} {result.source_width}x{result.source_height} → "
        f"{target} {human_bytes(len(result.data))} {result.width}x{result.height}, {how}"
    )
