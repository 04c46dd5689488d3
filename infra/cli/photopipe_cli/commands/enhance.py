"""`photopipe enhance ID...`: face restoration and upscaling jobs on the server."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from photopipe_cli.commands.upload import TimeoutOption
from photopipe_cli.options import ApiOption, JsonOption

MAX_BATCH = 20  # photopipe.models.MAX_BATCH_IMAGES
ZIP_ATTEMPTS = 60


class QualityLevel(StrEnum):
    fast = "fast"
    medium = "medium"
    high = "high"


Scale = Annotated[
    int | None,
    typer.Option(min=1, max=4, help="Output size multiplier, 1-4 (server default 2).", show_default=False),
]
Quality = Annotated[
    QualityLevel | None,
    typer.Option(
        help="fast: faces from 48 px, Lanczos background; medium: from 24 px; high: from 16 px, neural "
        "background when configured (server default high).",
        show_default=False,
    ),
]
TileSize = Annotated[
    int | None,
    typer.Option(
        min=128,
        max=1024,
        help="Tile edge in px for the neural background upscaler (default 400).",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    app.command("enhance")(enhance)


def params_of(scale: int | None, quality_level: QualityLevel | None, tile_size: int | None) -> dict[str, Any]:
    given = {
        "scale": scale,
        "quality_level": quality_level.value if quality_level else None,
        "tile_size": tile_size,
    }
    return {k: v for k, v in given.items() if v is not None}


def enhance(
    image_ids: Annotated[list[str], typer.Argument(metavar="ID", help="The photos' ids.")],
    scale: Scale = None,
    quality_level: Quality = None,
    tile_size: TileSize = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="Follow the jobs over live updates with a progress bar, then download the results."
        ),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            metavar="DIR",
            help="Download the results into DIR (implies --wait; default: here).",
            show_default=False,
        ),
    ] = None,
    timeout: TimeoutOption = None,
    api: ApiOption = None,
    json_: JsonOption = False,
) -> None:
    """Restore faces and upscale photos on the server.

    The server's GPU workers do it.

    One photo makes one job; several make a batch (up to 20 per batch; more are split), whose results
    come as one ZIP. Without --wait the job ids are printed and the jobs go on on the server; with
    --wait (it needs the server's live updates) a progress bar follows each job, and the results are
    downloaded: `<name>.enhanced.jpg` for one photo, `enhanced-<batch>.zip` for a batch. Later:
    `photopipe download ID --what enhanced`. Exit code 1 when a job failed or was cancelled."""
    from photopipe_cli.context import Ctx

    ctx = Ctx(api=api, json_mode=json_)
    ui = ctx.ui
    client = ctx.client()
    client.require_login()
    from photopipe_cli.commands.library import _safe

    ids = list(dict.fromkeys(_safe(i) for i in image_ids))
    wait = wait or output is not None
    live = None
    if wait:
        from photopipe_cli.commands.upload import open_live

        live = open_live(ctx, client)
    params = params_of(scale, quality_level, tile_size)
    user_id = ctx.user_id(client)
    jobs: list[dict[str, Any]] = []
    batches: list[str] = []
    if len(ids) == 1:
        jobs.append(client.post("/enhance", {"image_id": ids[0], "params": params}))
    else:
        for start in range(0, len(ids), MAX_BATCH):
            answer = client.post(
                "/enhance/batch", {"image_ids": ids[start : start + MAX_BATCH], "params": params}
            )
            batches.append(answer["batch_id"])
            jobs += answer["jobs"]
    with ctx.journal() as journal:
        for job in jobs:
            journal.remember_job(
                ctx.server.url,
                user_id,
                job_id=job["job_id"],
                image_id=job["image_id"],
                batch_id=job.get("batch_id"),
            )
    if live is None:
        _print_submitted(ui, jobs, batches)
        return
    with live:
        final = _follow_jobs(ctx, client, live, jobs, timeout)
    downloaded = _download_results(ctx, client, jobs, batches, final, output or Path("."))
    failed = [j for j in jobs if final[j["job_id"]].state != "completed"]
    if json_:
        ui.emit(
            {
                "jobs": [
                    {
                        "job_id": j["job_id"],
                        "image_id": j["image_id"],
                        "batch_id": j.get("batch_id"),
                        "state": final[j["job_id"]].state,
                        "reason": final[j["job_id"]].reason,
                    }
                    for j in jobs
                ],
                "batches": batches,
                "downloaded": downloaded,
            }
        )
    if failed:
        raise typer.Exit(1)


def _print_submitted(ui: Any, jobs: list[dict[str, Any]], batches: list[str]) -> None:
    if ui.json:
        ui.emit({"jobs": jobs, "batches": batches, "downloaded": []})
        return
    for job in jobs:
        ui.print(f"{job['job_id']}  {job['state']}  photo {job['image_id']}")
    what = f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}" + (
        f" in {len(batches)} batch(es)" if batches else ""
    )
    ui.info(f"Queued {what}. Follow them with `photopipe watch`, or next time use --wait.")


def _follow_jobs(ctx: Any, client: Any, live: Any, jobs: list[dict[str, Any]], timeout: float | None) -> Any:
    from photopipe_cli.follow import Follower, Tracked

    ui = ctx.ui
    names = {j["job_id"]: j["image_id"] for j in jobs}
    progress = None
    tasks: dict[str, Any] = {}
    if ui.progress:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=ui.err,
        )
        progress.start()
        for job_id, image_id in names.items():
            tasks[job_id] = progress.add_task(f"{image_id[:12]} queued", total=100)

    def changed(t: Tracked) -> None:
        if progress is not None:
            done = 100 if t.state == "completed" else (t.progress or 0)
            progress.update(tasks[t.id], completed=done, description=f"{names[t.id][:12]} {t.state}")
            if t.reason:
                progress.console.print(f"job {t.id} {t.state}: {t.reason}", markup=False, style="red")
        elif not ui.json:
            ui.info(
                f"job {t.id} {t.state}"
                + (f" {t.progress}%" if t.progress is not None else "")
                + (f": {t.reason}" if t.reason else "")
            )

    follower = Follower(live, client, "job", on_change=changed, on_notice=None if ui.json else ui.info)
    follower.add(names)
    for job in jobs:  # a job may already be past `queued` (a fast worker)
        follower.tracked[job["job_id"]].state = job.get("state")
    try:
        return follower.run(timeout)
    finally:
        if progress is not None:
            progress.stop()


def _download_results(
    ctx: Any, client: Any, jobs: list[dict[str, Any]], batches: list[str], final: Any, directory: Path
) -> list[str]:
    from photopipe_cli.api import save_to
    from photopipe_cli.commands.library import What, _name
    from photopipe_cli.ui import human_bytes

    ui = ctx.ui
    directory.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    if not batches:
        job = jobs[0]
        if final[job["job_id"]].state != "completed":
            return written
        url = _location(client, f"/enhance/{job['job_id']}/download")
        image = client.get(f"/images/{job['image_id']}")
        target = _free(directory / _name(str(image.get("filename") or job["image_id"]), What.enhanced))
        size = save_to(target, client, url)
        written.append(str(target))
        if not ui.json:
            ui.success(f"{target}  ({human_bytes(size)})")
        return written
    for batch_id in batches:
        if not any(final[j["job_id"]].state == "completed" for j in jobs if j.get("batch_id") == batch_id):
            continue
        url = _zip_location(ctx, client, batch_id)
        target = _free(directory / f"enhanced-{batch_id}.zip")
        size = save_to(target, client, url)
        written.append(str(target))
        if not ui.json:
            ui.success(f"{target}  ({human_bytes(size)})")
    return written


def _location(client: Any, path: str) -> str:
    from photopipe_cli.errors import CliError

    response = client.request("GET", path, allow_redirects=False)
    location = response.headers.get("Location")
    if response.status_code not in (301, 302, 303, 307) or not location:
        raise CliError(f"GET {path} answered HTTP {response.status_code} without a link to the result")
    return str(location)


def _zip_location(ctx: Any, client: Any, batch_id: str) -> str:
    """The batch ZIP's link. While the exports function writes it the route answers 202 with
    Retry-After: that is the route's contract (the ZIP has no live update), honoured a bounded number of
    times."""
    import time

    from photopipe_cli.errors import CliError

    path = f"/enhance/batch/{batch_id}/download"
    for attempt in range(ZIP_ATTEMPTS):
        response = client.request("GET", path, allow_redirects=False)
        if response.status_code in (301, 302, 303, 307) and response.headers.get("Location"):
            return str(response.headers["Location"])
        if response.status_code != 202:
            break
        if attempt == 0 and not ctx.ui.json:
            ctx.ui.info(f"The ZIP of batch {batch_id} is being written...")
        time.sleep(float(response.headers.get("Retry-After") or 5))
    raise CliError(f"the ZIP of batch {batch_id} is not ready", hint=f"Try later: GET /api/v1{path}")


def _free(path: Path) -> Path:
    """`path`, or `name (2).ext` and so on when it exists (results are never overwritten)."""
    if not path.exists():
        return path
    for n in range(2, 1000):
        candidate = path.with_name(f"{path.stem} ({n}){path.suffix}")
        if not candidate.exists():
            return candidate
    return path
