"""`photopipe models export`: GFPGAN or Real-ESRGAN weights to ONNX (needs the `export` extra, never needed at
run time)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from photopipe_cli.options import JsonOption

models = typer.Typer(help="Export and manage the enhancement models.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(models, name="models")


class Model(StrEnum):
    GFPGAN = "gfpgan"
    REALESRGAN = "realesrgan"


WEIGHTS = {Model.GFPGAN: "GFPGANv1.4.pth", Model.REALESRGAN: "RealESRGAN_x4plus.pth"}


@models.command("export")
def export(
    out: Annotated[Path, typer.Option(help="Output directory.")],
    model: Annotated[
        Model,
        typer.Option(
            help="gfpgan (face restoration) or realesrgan (RealESRGAN_x4plus.pth, the background upscaler)."
        ),
    ] = Model.GFPGAN,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="GFPGANv1.4.pth (or v1.3) from TencentARC's releases; RealESRGAN_x4plus.pth from xinntao's.",
            show_default=False,
        ),
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
    """Export GFPGAN (v1.3/v1.4 .pth) or Real-ESRGAN (x4plus) to ONNX fp32 + fp16 with a sha256 manifest.

    Loads the official weights (params_ema, strict) and writes the fp32 and fp16 (float16 input/output)
    ONNX files and OUT/manifest.json; every node of the graphs is checked to have a CUDA kernel. Needs
    torch: pip install 'photopipe[export]'."""
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
        print(
            f"error: give --weights {WEIGHTS[model]} (or --random for seeded random weights)", file=sys.stderr
        )
        raise typer.Exit(2)
    if weights is not None and not weights.is_file():
        print(f"error: no such weights file: {weights}", file=sys.stderr)
        raise typer.Exit(2)
    try:
        if model == Model.REALESRGAN:
            from photopipe_export import realesrgan

            config = realesrgan.REDUCED if reduced else realesrgan.X4PLUS
            manifest = realesrgan.export_realesrgan(weights, out, config=config, seed=seed, fp16=not no_fp16)
        else:
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
