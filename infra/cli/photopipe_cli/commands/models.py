"""`photopipe models export`: GFPGAN weights to ONNX (needs the `export` extra, never needed at run time)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from photopipe_cli.options import JsonOption

models = typer.Typer(help="Export and manage the enhancement models.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(models, name="models")


@models.command("export")
def export(
    out: Annotated[Path, typer.Option(help="Output directory.")],
    weights: Annotated[
        Path | None,
        typer.Option(help="GFPGANv1.4.pth (or v1.3) from TencentARC's releases.", show_default=False),
    ] = None,
    random: Annotated[
        bool,
        typer.Option(
            "--random",
            help="No weights: the architecture with seeded random weights (implied by --reduced without --weights).",
        ),
    ] = False,
    reduced: Annotated[bool, typer.Option(help="A small configuration of the architecture (tests).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the random weights (without --weights).")] = 0,
    no_fp16: Annotated[bool, typer.Option("--no-fp16", help="Write the fp32 file only.")] = False,
    json_: JsonOption = False,
) -> None:
    """Export GFPGAN (v1.3/v1.4 .pth) to ONNX fp32 + fp16 with a sha256 manifest.

    Loads the official GFPGANv1Clean weights (params_ema, strict) and writes OUT/gfpgan_fp32.onnx,
    OUT/gfpgan_fp16.onnx (float16 input/output) and OUT/manifest.json. Needs torch:
    pip install 'photopipe[export]'."""
    import json
    import logging
    import sys

    from photopipe_cli.logs import StderrHandler

    # to whatever stderr is when a record is written (a test may swap it between two commands)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", handlers=[StderrHandler()])
    if weights is not None and random:
        print("error: give --weights or --random, not both", file=sys.stderr)
        raise typer.Exit(2)
    try:
        import torch  # noqa: F401
    except ImportError:
        print(
            "error: exporting needs torch: install the export extra: pip install 'photopipe[export]'",
            file=sys.stderr,
        )
        raise typer.Exit(2) from None
    from photopipe_export.arch import FULL, REDUCED
    from photopipe_export.export import export_gfpgan

    if weights is None and not (random or reduced):
        print("error: give --weights GFPGANv1.4.pth (or --random for seeded random weights)", file=sys.stderr)
        raise typer.Exit(2)
    if weights is not None and not weights.is_file():
        print(f"error: no such weights file: {weights}", file=sys.stderr)
        raise typer.Exit(2)
    try:
        manifest = export_gfpgan(
            weights, out, config=REDUCED if reduced else FULL, seed=seed, fp16=not no_fp16
        )
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(1) from None
    if json_:
        from dataclasses import asdict

        print(json.dumps({"manifest": str(out / "manifest.json"), **asdict(manifest)}, indent=2))
        return
    for entry in manifest.files:
        print(f"{out / entry.path}  {entry.precision}  {entry.bytes} bytes  sha256 {entry.sha256}")
    print(f"{out / 'manifest.json'}")
