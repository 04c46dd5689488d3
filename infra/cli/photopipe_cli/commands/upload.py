"""`photopipe upload PATH...`: send photos to your library."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from photopipe_cli.options import ApiOption, JsonOption

WaitOption = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="Follow every photo to its final state over live updates (the server's WebSocket API) and "
        "print each change; a rejected photo prints its reason.",
    ),
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        min=1,
        help="With --wait: give up after this long (exit 1). Default: wait as long as it takes.",
        show_default=False,
    ),
]
MaxSide = Annotated[int, typer.Option("--max-side", min=16, help="Longest side in pixels, never upscaled.")]
MaxKb = Annotated[int, typer.Option("--max-kb", min=5, help="Size budget in kilobytes (1 KB = 1000 bytes).")]


def register(app: typer.Typer) -> None:
    app.command("upload")(upload)


def upload(
    paths: Annotated[
        list[Path], typer.Argument(metavar="PATH", help="Photos, or folders to upload recursively.")
    ],
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=32, help="Photos sent at once.")] = 4,
    compress: Annotated[
        bool, typer.Option("--compress", help="Compress each photo to --max-side / --max-kb before sending.")
    ] = False,
    max_side: MaxSide = 1920,
    max_kb: MaxKb = 400,
    wait: WaitOption = False,
    timeout: TimeoutOption = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Send photos even when the upload journal says they already arrived."),
    ] = False,
    api: ApiOption = None,
    json_: JsonOption = False,
) -> None:
    """Upload photos, and folders of photos, to your library.

    Photos are recognised by their content, not their names; other files are skipped with the reason
    (a file named on the command line that is not a photo is an error). Hidden files and folders are
    skipped. Before sending, each photo's SHA-256 is checked: a second copy in the same run is skipped
    as a duplicate, and so is a photo the local upload journal says already arrived on this server
    for this account (so running the same command again sends only what is missing). The service is
    asked whether it already knows the photo's category (`/classify/check-cache`); a photo it knows
    is still uploaded (it is your copy), and classifying it costs no model call.

    Progress is shown per file and in total, with bytes/s and the time left. Uploaded photos are then
    processed on the server; --wait follows them there (it needs the server's live updates).
    Exit code 1 when a photo could not be sent (or, with --wait, ended rejected or failed)."""
    from photopipe_cli.context import Ctx
    from photopipe_cli.photos import find_photos
    from photopipe_cli.progress import reporter_for
    from photopipe_cli.uploader import Uploader, UploadOptions

    ctx = Ctx(api=api, json_mode=json_)
    ui = ctx.ui
    client = ctx.client(pool_size=jobs + 2)
    client.require_login()
    user_id = str(client.get("/profile")["user"]["user_id"])  # checks the token before any work
    info = client.get("/info", auth=False) or {}
    limits = info.get("limits") or {}
    live = open_live(ctx, client) if wait else None
    found = find_photos(paths)
    if not found:
        from photopipe_cli.errors import UsageProblem

        raise UsageProblem("nothing to upload: the folders given hold no files")
    with ctx.journal() as journal:
        uploader = Uploader(
            client,
            journal,
            user_id=user_id,
            options=UploadOptions(
                jobs=jobs, compress=compress, max_side=max_side, max_kb=max_kb, force=force
            ),
            max_upload_bytes=limits.get("max_upload_bytes"),
            reporter=reporter_for(ui),
        )
        import time

        started = time.perf_counter()
        try:
            outcomes = uploader.run(found)
        except KeyboardInterrupt:
            ui.error(
                "interrupted; what arrived is in the upload journal",
                hint="Run the same command again to send the rest.",
            )
            raise typer.Exit(130) from None
        seconds = time.perf_counter() - started
    problems = any(o.failed for o in outcomes)
    if live is not None:
        from photopipe_cli.follow import TimedOut

        with live:
            try:
                problems |= follow_uploads(ui, client, live, outcomes, timeout)
            except TimedOut as e:  # the photos go on on the server; report what is known
                ui.error(e.message, e.hint)
                problems = True
    summary = _summary(outcomes, seconds)
    if json_:
        ui.emit({"server": ctx.server.url, "files": [o.to_json() for o in outcomes], "summary": summary})
    else:
        _print_summary(ui, summary, waited=live is not None)
    if problems:
        raise typer.Exit(1)


def open_live(ctx: Any, client: Any) -> Any:
    from photopipe_cli.live import LiveUpdates, endpoint

    notice = ctx.ui.info if not ctx.ui.json else (lambda _t: None)
    return LiveUpdates(endpoint(client), client.token(), on_notice=notice).open()


def follow_uploads(ui: Any, client: Any, live: Any, outcomes: list[Any], timeout: float | None) -> bool:
    """Follow the photos just uploaded to their final state, printing each change (on stderr) and
    filling in each outcome's states and reason; True when one ended rejected or failed."""
    from photopipe_cli.follow import Follower, Tracked
    from photopipe_cli.uploader import Status

    by_id = {o.image_id: o for o in outcomes if o.status is Status.UPLOADED and o.image_id}
    if not by_id:
        return False

    def changed(t: Tracked) -> None:
        outcome = by_id[t.id]
        if ui.json:
            return
        line = f"{t.state:<22} {outcome.path}  ({t.id})"
        if t.reason:
            line += f"\n{'':<23}{t.reason}"
        style = "red" if t.state in ("rejected", "failed") else ("green" if t.final("image") else "")
        ui.err.print(line, markup=False, style=style)

    follower = Follower(live, client, "image", on_change=changed, on_notice=ui.info if not ui.json else None)
    follower.add(by_id)
    if not ui.json:
        ui.info(f"Following {len(by_id)} photos through processing (live updates)...")
    try:
        tracked = follower.run(timeout)
    finally:
        for image_id, t in follower.tracked.items():
            by_id[image_id].states = t.states
            by_id[image_id].final_state = t.state if t.final("image") else None
            if t.reason:
                by_id[image_id].reason = t.reason
    return any(t.state in ("rejected", "failed") for t in tracked.values())


def _summary(outcomes: list[Any], seconds: float) -> dict[str, Any]:
    from photopipe_cli.uploader import Status

    def count(status: Status) -> int:
        return sum(1 for o in outcomes if o.status is status)

    sent = sum(o.bytes_sent for o in outcomes)
    return {
        "uploaded": count(Status.UPLOADED),
        "duplicates": count(Status.DUPLICATE),
        "already_uploaded": count(Status.ALREADY_UPLOADED),
        "not_images": count(Status.NOT_AN_IMAGE),
        "failed": count(Status.FAILED),
        "bytes_sent": sent,
        "bytes_not_sent": sum(
            o.size for o in outcomes if o.status in (Status.DUPLICATE, Status.ALREADY_UPLOADED)
        ),
        "seconds": round(seconds, 3),
        "rejected": sum(1 for o in outcomes if o.final_state in ("rejected", "failed")),
    }


def _print_summary(ui: Any, s: dict[str, Any], *, waited: bool) -> None:
    from photopipe_cli.ui import human_bytes

    rate = (
        f", {human_bytes(s['bytes_sent'] / s['seconds'])}/s" if s["seconds"] > 0 and s["bytes_sent"] else ""
    )
    parts = [f"{s['uploaded']} uploaded ({human_bytes(s['bytes_sent'])} in {s['seconds']:.1f} s{rate})"]
    for key, one, many in (
        ("already_uploaded", "already uploaded", "already uploaded"),
        ("duplicates", "duplicate", "duplicates"),
        ("not_images", "not an image", "not images"),
        ("failed", "failed", "failed"),
        ("rejected", "rejected", "rejected"),
    ):
        if s[key]:
            parts.append(f"{s[key]} {one if s[key] == 1 else many}")
    style = "red" if s["failed"] or s["rejected"] else "green"
    ui.err.print(" · ".join(parts), markup=False, style=style)
    if s["uploaded"] and not waited:
        ui.info("They are being processed on the server: see `photopipe list`, or `photopipe show ID`.")
