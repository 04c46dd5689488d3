"""`photopipe restore IN`: the enhancement pipeline on a local file, with an exported model, no server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from photopipe_cli.commands.enhance import Quality, Scale, TileSize, params_of
from photopipe_cli.options import JsonOption, PhotoIn

DEFAULT_MODEL_DIR = Path("models/gfpgan")


def register(app: typer.Typer) -> None:
    app.command("restore")(restore)


def restore(
    source: PhotoIn,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            metavar="OUT",
            help="Where to write the JPEG. Default: IN's name with .restored.jpg, beside it.",
            show_default=False,
        ),
    ] = None,
    scale: Scale = None,
    quality_level: Quality = None,
    tile_size: TileSize = None,
    model_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Exported face model (manifest.json + ONNX). Default: $PHOTOPIPE_MODEL_DIR, else models/gfpgan.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists.")] = False,
    json_: JsonOption = False,
) -> None:
    """Restore faces and upscale a local photo, offline.

    No server: everything runs on this machine.

    The same pipeline as the GPU workers (upright decode, MTCNN face detection, FFHQ alignment, GFPGAN
    through ONNX Runtime, feathered paste-back, Lanczos background), on the best ONNX Runtime provider
    this machine has (TensorRT, then CUDA, then the CPU). Export a model first:
    `photopipe models export --weights GFPGANv1.4.pth --out models/gfpgan`."""
    import os

    from photopipe_cli.errors import CliError
    from photopipe_cli.ui import Ui, human_bytes

    ui = Ui(json_mode=json_)
    directory = model_dir or Path(os.environ.get("PHOTOPIPE_MODEL_DIR") or DEFAULT_MODEL_DIR)
    if not (directory / "manifest.json").is_file():
        raise CliError(
            f"no exported face model in {directory} (no manifest.json)",
            hint="Export one: photopipe models export --weights GFPGANv1.4.pth --out models/gfpgan "
            "(or --reduced --out DIR for a small test model), or point --model-dir at one.",
        )
    target = output or source.with_name(f"{source.stem}.restored.jpg")
    if target.exists() and not force:
        raise CliError(f"{target} already exists", hint="Give another -o OUT, or --force to overwrite it.")

    from photopipe.enhance.faces import FACE_SIZE, MtcnnDetector
    from photopipe.enhance.manifest import ManifestError
    from photopipe.enhance.pipeline import enhance
    from photopipe.enhance.session import GfpganSession
    from photopipe.enhance.upscale import LanczosUpscaler
    from photopipe.errors import PhotopipeError
    from photopipe.models import EnhanceParams

    params = EnhanceParams(**params_of(scale, quality_level, tile_size))
    try:
        status = ui.err.status("Loading the face model...") if ui.progress else None
        if status is not None:
            status.start()
        try:
            restorer = GfpganSession(directory, max_batch=8)
            if restorer.input_size != FACE_SIZE:
                raise CliError(
                    f"the model in {directory} takes {restorer.input_size} px faces; the pipeline aligns faces "
                    f"to {FACE_SIZE} px (a `models export --reduced` model is for the exporter's own tests)",
                    hint="Export GFPGAN v1.3/v1.4: photopipe models export --weights GFPGANv1.4.pth --out DIR",
                )
            detector = MtcnnDetector()
            if status is not None:
                status.update(f"Restoring {source.name} on {restorer.provider}...")
            result = enhance(source.read_bytes(), params, detector, restorer, LanczosUpscaler())
        finally:
            if status is not None:
                status.stop()
    except ManifestError as e:
        raise CliError(f"the model in {directory} cannot be used: {e}") from None
    except PhotopipeError as e:  # ImageRejected (not a usable photo), ConfigurationError (MTCNN files)
        raise CliError(e.message) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(result.jpeg)
    data = {
        "input": str(source),
        "output": str(target),
        "bytes": len(result.jpeg),
        "width": result.width,
        "height": result.height,
        "faces": result.faces,
        "provider": restorer.provider,
        "precision": restorer.precision,
        "params": params.model_dump(),
        "timings_ms": result.timings,
        "notes": result.notes,
    }
    if json_:
        ui.emit(data)
        return
    faces = f"{result.faces} face{'s' if result.faces != 1 else ''} restored"
    ui.success(
        f"{target}  {result.width}x{result.height}, {human_bytes(len(result.jpeg))}, {faces} ({restorer.provider})"
    )
    for note in result.notes:
        ui.info(f"note: {note}")
