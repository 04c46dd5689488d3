"""`photopipe camera list|capture|record`: stills and clips from a camera (OpenCV, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from photopipe_cli.options import ApiOption, JsonOption

camera = typer.Typer(
    help="Take a photo or record a clip with a camera. Uses OpenCV's headless build: there is no "
    "preview window (capture saves a still, record saves a video). DEVICE is a camera index from "
    "`photopipe camera list`, or a video file that stands in for a camera.",
    no_args_is_help=True,
)

Device = Annotated[str, typer.Argument(metavar="[DEVICE]", help="Camera index (default 0) or a video file.")]


def register(app: typer.Typer) -> None:
    app.add_typer(camera, name="camera")


@camera.command("list")
def list_(json_: JsonOption = False) -> None:
    """List the cameras this machine has (none is not an error)."""
    from photopipe_cli.camera import list_cameras
    from photopipe_cli.ui import Ui, plain

    ui = Ui(json_mode=json_)
    cameras = list_cameras()
    if json_:
        ui.emit({"cameras": [vars(c) for c in cameras]})
        return
    if not cameras:
        ui.info("No camera found on this machine.")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("DEVICE", "NAME", "SIZE", "FPS"):
        table.add_column(column)
    for c in cameras:
        table.add_row(
            plain(c.index),
            plain(c.name),
            plain(f"{c.width}x{c.height}"),
            plain(f"{c.fps:g}" if c.fps else "-"),
        )
    ui.print(table)


@camera.command("capture")
def capture(
    device: Device = "0",
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            metavar="FILE",
            help="Where to save it (.jpg, .png, .webp). Default: capture-<time>.jpg here.",
            show_default=False,
        ),
    ] = None,
    upload: Annotated[
        bool, typer.Option("--upload", help="Upload the photo to your library afterwards.")
    ] = False,
    api: ApiOption = None,
    json_: JsonOption = False,
) -> None:
    """Take one photo with a camera and save it (no preview window: headless OpenCV)."""
    from datetime import datetime

    from photopipe_cli.camera import capture_still
    from photopipe_cli.context import Ctx
    from photopipe_cli.errors import CliError

    ctx = Ctx(api=api, json_mode=json_)
    client = ctx.client()
    user_id = None
    if upload:  # fail before the picture is taken, not after
        client.require_login()
        user_id = str(client.get("/profile")["user"]["user_id"])
    target = output or Path(f"capture-{datetime.now().strftime('%Y%m%d-%H%M%S')}.jpg")
    if target.exists():
        raise CliError(f"{target} already exists", hint="Give another -o FILE.")
    width, height = capture_still(device, target)
    data: dict[str, object] = {"output": str(target), "width": width, "height": height, "device": device}
    if upload and user_id is not None:
        from photopipe_cli.photos import examine
        from photopipe_cli.uploader import QuietReporter, Status, Uploader, UploadOptions

        info = client.get("/info", auth=False) or {}
        with ctx.journal() as journal:
            (outcome,) = Uploader(
                client,
                journal,
                user_id=user_id,
                options=UploadOptions(jobs=1),
                max_upload_bytes=(info.get("limits") or {}).get("max_upload_bytes"),
                reporter=QuietReporter(),
            ).run([examine(target, explicit=True)])
        data["upload"] = outcome.to_json()
        if outcome.status is not Status.UPLOADED:
            if json_:
                ctx.ui.emit(data)
            raise CliError(f"the photo was saved to {target} but not uploaded: {outcome.reason}")
    if json_:
        ctx.ui.emit(data)
        return
    ctx.ui.success(f"{target}  {width}x{height}")
    if "upload" in data:
        ctx.ui.success(f"uploaded as {data['upload']['image_id']}")  # type: ignore[index]


@camera.command("record")
def record(
    seconds: Annotated[float, typer.Argument(metavar="SECONDS", min=0.1, help="How long to record.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", metavar="FILE", help="The video file (.mp4 or .avi).")
    ],
    device: Device = "0",
    json_: JsonOption = False,
) -> None:
    """Record a video clip with a camera (no preview window: headless OpenCV).

    From a video file (standing in for a camera), SECONDS of its frames are copied."""
    from photopipe_cli.camera import record as run
    from photopipe_cli.errors import CliError
    from photopipe_cli.ui import Ui

    ui = Ui(json_mode=json_)
    if output.exists():
        raise CliError(f"{output} already exists", hint="Give another -o FILE.")
    progress = None
    task = None
    if ui.progress:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("recording"),
            BarColumn(),
            TextColumn("{task.completed:.1f}/{task.total:g} s"),
            TimeRemainingColumn(),
            console=ui.err,
        )
        progress.start()
        task = progress.add_task("record", total=seconds)
    try:
        result = run(
            device,
            seconds,
            output,
            on_progress=(lambda s: progress.update(task, completed=s))
            if progress and task is not None
            else None,
        )
    finally:
        if progress is not None:
            progress.stop()
    data = {"output": str(output), **vars(result)}
    if json_:
        ui.emit(data)
        return
    ui.success(
        f"{output}  {result.frames} frames, {result.width}x{result.height} at {result.fps:g} fps, {result.seconds:g} s"
    )
    if result.ended_early:
        ui.warn(f"the source ended after {result.seconds:g} s")
