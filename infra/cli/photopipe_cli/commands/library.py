"""`photopipe list|show|download|delete`: the photos in your library."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from photopipe_cli.options import ApiOption, JsonOption

PAGE = 100  # the API's largest page


class State(StrEnum):
    pending_upload = "pending_upload"
    processing = "processing"
    processed = "processed"
    classified = "classified"
    classification_failed = "classification_failed"
    classification_skipped = "classification_skipped"
    rejected = "rejected"
    failed = "failed"


class Category(StrEnum):
    social_activities = "social_activities"
    pets = "pets"
    single_person = "single_person"
    foods = "foods"
    travel_scenery = "travel_scenery"
    screenshot = "screenshot"
    idcard = "idcard"
    other = "other"


class What(StrEnum):
    original = "original"
    preview = "preview"
    thumbnail = "thumbnail"
    enhanced = "enhanced"


def register(app: typer.Typer) -> None:
    app.command("list")(list_photos)
    app.command("show")(show)
    app.command("download")(download)
    app.command("delete")(delete)


# ------------------------------------------------------------------------------------------ list


def list_photos(
    state: Annotated[
        State | None, typer.Option(help="Only photos in this state.", show_default=False)
    ] = None,
    category: Annotated[
        Category | None, typer.Option(help="Only photos of this category.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many photos.")] = 20,
    all_: Annotated[
        bool, typer.Option("--all", help="Every photo (follows every page; ignores --limit).")
    ] = False,
    cursor: Annotated[
        str | None,
        typer.Option(help="Continue where a previous listing stopped (its next_cursor).", show_default=False),
    ] = None,
    api: ApiOption = None,
    json_: JsonOption = False,
) -> None:
    """List your photos, newest first.

    A table of id, name, state, category, size and date, then a total.

    The server filters by state; the category is filtered here, on as many pages as it takes."""
    from photopipe_cli.context import Ctx

    ctx = Ctx(api=api, json_mode=json_)
    client = ctx.client()
    items: list[dict[str, Any]] = []
    next_cursor = cursor
    while True:
        want = PAGE if (all_ or category) else min(PAGE, limit - len(items))
        page = client.get("/images", params={"limit": want, "cursor": next_cursor, "state": state})
        for item in page.get("items", []):
            if category is None or (item.get("classification") or {}).get("category") == category:
                items.append(item)
        next_cursor = page.get("next_cursor")
        if not next_cursor or (not all_ and len(items) >= limit):
            break
    if not all_ and len(items) > limit:
        items = items[:limit]
        # what was cut from the last page is not behind `next_cursor`: list again from the start with a
        # larger --limit, or use --all
    if json_:
        ctx.ui.emit({"items": items, "count": len(items), "next_cursor": next_cursor})
        return
    _table(ctx.ui, items)
    total = f"{len(items)} photo{'s' if len(items) != 1 else ''}"
    if next_cursor:
        total += f"; more with --all, or --cursor {next_cursor}"
    ctx.ui.info(total)


def _table(ui: Any, items: list[dict[str, Any]]) -> None:
    """A table on a terminal; tab-separated lines, nothing cut, when piped (like `gh`)."""
    from rich.table import Table

    from photopipe_cli.ui import human_bytes, plain

    rows = [
        (
            str(item.get("image_id")),
            str(item.get("filename")),
            str(item.get("state")),
            str((item.get("classification") or {}).get("category") or "-"),
            human_bytes(item.get("bytes") or item.get("declared_size")),
            _date(item.get("created_at")),
        )
        for item in items
    ]
    if not ui.out.is_terminal:
        import sys

        sys.stdout.writelines("\t".join(row) + "\n" for row in rows)  # rich would expand the tabs
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ID", "NAME", "STATE", "CATEGORY", "SIZE", "DATE"):
        table.add_column(
            column,
            justify="right" if column == "SIZE" else "left",
            no_wrap=column != "NAME",
            overflow="ellipsis",
        )
    for row in rows:
        table.add_row(*(plain(cell) for cell in row))
    ui.print(table)


def _date(value: str | None) -> str:
    from datetime import datetime

    if not value:
        return "-"
    try:
        return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return value


# ------------------------------------------------------------------------------------------ show


def show(
    image_id: Annotated[str, typer.Argument(metavar="ID", help="The photo's id (from `photopipe list`).")],
    api: ApiOption = None,
    json_: JsonOption = False,
) -> None:
    """Show one photo: state, reason, size, category, links.

    The links are short-lived (a few minutes)."""
    from photopipe_cli.context import Ctx
    from photopipe_cli.ui import human_bytes

    ctx = Ctx(api=api, json_mode=json_)
    image = ctx.client().get(f"/images/{_safe(image_id)}")
    if json_:
        ctx.ui.emit(image)
        return
    rows: list[tuple[str, Any]] = [
        ("id", image.get("image_id")),
        ("name", image.get("filename")),
        ("state", image.get("state")),
    ]
    if image.get("reason") or image.get("reason_message"):
        rows.append(("reason", ": ".join(p for p in (image.get("reason"), image.get("reason_message")) if p)))
    if image.get("width"):
        rows.append(("picture", f"{image.get('format') or '?'} {image['width']}x{image['height']}"))
    rows.append(("size", human_bytes(image.get("bytes") or image.get("declared_size"))))
    classification = image.get("classification")
    if classification:
        rows.append(
            (
                "category",
                f"{classification.get('category')} ({classification.get('label_en')} / "
                f"{classification.get('label_zh')}), confidence {classification.get('confidence')}, "
                f"from {classification.get('source')}",
            )
        )
    rows += [
        ("sha256", image.get("sha256")),
        ("uploaded", _date(image.get("created_at"))),
        ("updated", _date(image.get("updated_at"))),
    ]
    rows += [(name, url) for name, url in (image.get("urls") or {}).items() if url]
    ctx.ui.fields(rows)


def _safe(item_id: str) -> str:
    """An id as a path segment: ids are letters, digits, '-' and '_'; anything else cannot exist."""
    import re

    from photopipe_cli.errors import NotFound

    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", item_id):
        raise NotFound(f"no photo or job {item_id!r}: ids are letters, digits, '-' and '_'")
    return item_id


# -------------------------------------------------------------------------------------- download


def download(
    image_id: Annotated[
        str, typer.Argument(metavar="ID", help="The photo's id (or an enhancement job's id).")
    ],
    what: Annotated[
        What, typer.Option(help="Which file: the original, a rendition, or the enhanced result.")
    ] = What.original,
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            metavar="PATH",
            help="Where to write it: a file, a folder (an existing one, or a name ending in /), or - for "
            "stdout. Default: the photo's name, here.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    api: ApiOption = None,
    json_: JsonOption = False,
) -> None:
    """Download a photo, a rendition of it, or its enhanced result.

    --what original (default), preview (1440 px JPEG), thumbnail (256 px WebP) or enhanced (the
    latest `photopipe enhance` of it from this machine; or give the enhancement job's id)."""
    import os
    import sys

    from photopipe_cli.api import save_to
    from photopipe_cli.context import Ctx
    from photopipe_cli.errors import CliError, NotFound, UsageProblem
    from photopipe_cli.ui import human_bytes

    ctx = Ctx(api=api, json_mode=json_)
    client = ctx.client()
    to_stdout = output == "-"
    if to_stdout and json_:
        raise UsageProblem("-o - writes the file to stdout; it cannot also carry --json")
    if what is What.enhanced:
        url, name = _enhanced(ctx, client, _safe(image_id))
    else:
        image = client.get(f"/images/{_safe(image_id)}")
        link = (image.get("urls") or {}).get(what.value)
        if not link:
            state = image.get("state")
            raise NotFound(f"photo {image_id} has no {what.value} (it is {state})")
        url = str(link)
        name = _name(str(image.get("filename") or image_id), what)
    if to_stdout:
        client.download(url, sys.stdout.buffer)
        return
    target = Path(output) if output else Path(name)
    if output and (output.endswith(("/", os.sep)) or target.is_dir()):
        target = target / name
    if target.exists() and not force:
        raise CliError(f"{target} already exists", hint="Give another -o PATH, or --force to overwrite it.")
    size = save_to(target, client, url)
    if json_:
        ctx.ui.emit({"image_id": image_id, "what": what.value, "path": str(target), "bytes": size})
    else:
        ctx.ui.success(f"{target}  ({human_bytes(size)})")


def _name(filename: str, what: What) -> str:
    stem = Path(filename).stem or "photo"
    if what is What.original:
        return Path(filename).name or "photo"
    if what is What.preview:
        return f"{stem}.preview.jpg"
    if what is What.thumbnail:
        return f"{stem}.thumb.webp"
    return f"{stem}.enhanced.jpg"


def _enhanced(ctx: Any, client: Any, item_id: str) -> tuple[str, str]:
    """(url, file name) of the enhanced result for a photo id (latest known job) or a job id."""
    from photopipe_cli.errors import CliError, NotFound

    job_id = None
    with ctx.journal() as journal:
        job_id = journal.latest_job(ctx.server.url, ctx.user_id(client), item_id)
    if job_id is None:
        job_id = item_id  # perhaps it is a job's id
    try:
        job = client.get(f"/enhance/{job_id}")
    except NotFound:
        raise NotFound(
            f"no enhancement of {item_id} is known here",
            hint="Run `photopipe enhance ID --wait`, or give the enhancement job's id.",
        ) from None
    if job.get("state") != "completed" or not job.get("result_url"):
        raise CliError(f"enhancement job {job_id} is {job.get('state')}: there is no result to download yet")
    try:
        image = client.get(f"/images/{job['image_id']}")
        filename = str(image.get("filename") or job["image_id"])
    except NotFound:
        filename = str(job["image_id"])
    return str(job["result_url"]), _name(filename, What.enhanced)


# ---------------------------------------------------------------------------------------- delete


def delete(
    image_ids: Annotated[list[str], typer.Argument(metavar="ID", help="The photos' ids.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    api: ApiOption = None,
    json_: JsonOption = False,
) -> None:
    """Delete photos for good (asks first).

    The originals, their renditions and records go; this cannot be undone.

    Asks first unless --yes (and refuses to go on without a terminal to ask on). Exit code 4 when an
    id was not found (the others are deleted)."""
    from photopipe_cli.context import Ctx
    from photopipe_cli.errors import ExitCode, NotFound, UsageProblem

    ctx = Ctx(api=api, json_mode=json_)
    ui = ctx.ui
    ids = list(dict.fromkeys(image_ids))
    for image_id in ids:
        _safe(image_id)
    client = ctx.client()
    client.require_login()
    if not yes:
        if not ui.interactive:
            raise UsageProblem("deleting needs confirmation: pass --yes (there is no terminal to ask on)")
        noun = "this photo" if len(ids) == 1 else f"these {len(ids)} photos"
        if not typer.confirm(f"Delete {noun} for good (original, renditions and record)?", err=True):
            ui.info("Nothing deleted.")
            raise typer.Exit(1)
    deleted: list[str] = []
    missing: list[str] = []
    if len(ids) == 1:
        try:
            client.delete(f"/images/{ids[0]}")
            deleted.append(ids[0])
        except NotFound:
            missing.append(ids[0])
    else:
        for start in range(0, len(ids), PAGE):
            answer = client.post("/images/batch-delete", {"image_ids": ids[start : start + PAGE]})
            deleted += answer.get("deleted", [])
            missing += answer.get("not_found", [])
    if deleted:
        with ctx.journal() as journal:
            journal.forget_images(ctx.server.url, ctx.user_id(client), deleted)
    if json_:
        ui.emit({"deleted": deleted, "not_found": missing})
    else:
        for image_id in deleted:
            ui.success(f"deleted   {image_id}")
        for image_id in missing:
            ui.error(f"not found {image_id}")
    if missing:
        raise typer.Exit(int(ExitCode.NOT_FOUND))
