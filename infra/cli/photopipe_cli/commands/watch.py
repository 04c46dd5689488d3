"""`photopipe watch`: print live notifications until Ctrl+C."""

from __future__ import annotations

from typing import Any

import typer

from photopipe_cli.options import ApiOption, JsonOption


def register(app: typer.Typer) -> None:
    app.command("watch")(watch)


def watch(api: ApiOption = None, json_: JsonOption = False) -> None:
    """Print live changes to your photos and jobs.

    Every change to your photos and enhancement jobs, as it happens, until Ctrl+C.

    Needs the server's live updates (its WebSocket API); reconnects by itself when the connection
    drops. A rejected or failed photo is printed with its reason. With --json, one JSON object per
    line (JSON Lines), as the server sent it plus `reason` where one was looked up."""
    from photopipe_cli.commands.upload import open_live
    from photopipe_cli.context import Ctx
    from photopipe_cli.live import Failed, Lost, Reconnected

    ctx = Ctx(api=api, json_mode=json_)
    ui = ctx.ui
    client = ctx.client()
    client.require_login()
    live = open_live(ctx, client)
    if not json_:
        ui.info(f"Watching {ctx.server.url} for changes (Ctrl+C to stop)...")
    try:
        with live:
            while True:
                event = live.next(1.0)
                if event is None or isinstance(event, (Lost, Reconnected)):
                    continue
                if isinstance(event, Failed):
                    raise event.error
                _print(ui, client, event)
    except KeyboardInterrupt:
        if not json_:
            ui.info("Stopped watching.")


def _print(ui: Any, client: Any, message: dict[str, Any]) -> None:
    from datetime import datetime

    from photopipe_cli.errors import NotFound

    kind = "image" if message.get("type") == "image.updated" else "job"
    item_id = message.get("image_id") if kind == "image" else message.get("job_id")
    state = str(message.get("state"))
    reason = message.get("reason_message") or message.get("reason")
    if not reason and kind == "image" and state in ("rejected", "failed", "classification_failed"):
        try:
            record = client.get(f"/images/{item_id}")
            reason = ": ".join(p for p in (record.get("reason"), record.get("reason_message")) if p) or None
        except NotFound:
            reason = None
    if ui.json:
        ui.emit_line({**message, **({"reason": reason} if reason else {})})
        return
    try:
        at = datetime.fromisoformat(str(message.get("at"))).astimezone().strftime("%H:%M:%S")
    except ValueError:
        at = datetime.now().strftime("%H:%M:%S")
    progress = f" {message['progress']}%" if isinstance(message.get("progress"), int) else ""
    line = f"{at}  {kind:<5} {item_id}  {state}{progress}" + (f"  {reason}" if reason else "")
    style = "red" if state in ("rejected", "failed") else None
    ui.out.print(line, markup=False, style=style, highlight=False)
