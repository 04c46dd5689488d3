"""Follow photos or enhancement jobs to their final state with live updates (no polling).

Every `image.updated` / `job.updated` message for a followed id is a change, handed to `on_change`
in the order the server stamped them (`at`; an older message than the last one seen is a late
duplicate and is dropped). A photo that ends rejected or failed gets its reason: from the message when
it carries one, else from one `GET /images/{id}`. After a reconnect, one `GET` per id not yet final
catches up on what the socket may have missed while it was down."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from photopipe_cli.api import Api
from photopipe_cli.errors import CliError, NotFound
from photopipe_cli.live import Failed, LiveUpdates, Lost, Reconnected

IMAGE_FINAL = frozenset(
    {"classified", "classification_skipped", "classification_failed", "rejected", "failed"}
)
IMAGE_PROBLEMS = frozenset({"rejected", "failed", "classification_failed"})
JOB_FINAL = frozenset({"completed", "failed", "cancelled"})

Kind = Literal["image", "job"]


@dataclass
class Tracked:
    id: str
    state: str | None = None
    states: list[str] = field(default_factory=list)
    progress: int | None = None
    at: str = ""
    reason: str | None = None  # a sentence, for a photo that ended rejected/failed or a failed job
    record: dict[str, Any] | None = None  # the last record fetched, if any

    def final(self, kind: Kind) -> bool:
        return self.state in (IMAGE_FINAL if kind == "image" else JOB_FINAL)


class TimedOut(CliError):
    pass


class Follower:
    def __init__(
        self,
        live: LiveUpdates,
        api: Api,
        kind: Kind,
        *,
        on_change: Callable[[Tracked], None] | None = None,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        self.live = live
        self.api = api
        self.kind = kind
        self._on_change = on_change or (lambda _t: None)
        self._on_notice = on_notice or (lambda _t: None)
        self.tracked: dict[str, Tracked] = {}

    def add(self, ids: Iterable[str]) -> None:
        for i in ids:
            self.tracked.setdefault(i, Tracked(i))

    def pending(self) -> list[str]:
        return [i for i, t in self.tracked.items() if not t.final(self.kind)]

    def run(self, timeout: float | None = None) -> dict[str, Tracked]:
        """Until every followed id is final (or `timeout` seconds pass: `TimedOut`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.pending():
            wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if wait <= 0:
                raise TimedOut(
                    f"gave up waiting after {timeout:g} s: {len(self.pending())} still in progress",
                    hint="They go on on the server; check them later with `photopipe list`.",
                )
            event = self.live.next(wait)
            if event is None:
                continue
            if isinstance(event, Failed):
                raise event.error
            if isinstance(event, Lost):
                continue
            if isinstance(event, Reconnected):
                self._catch_up()
                continue
            self._message(event)
        return self.tracked

    # ------------------------------------------------------------------------------------ changes
    def _message(self, message: dict[str, Any]) -> None:
        key = "image_id" if self.kind == "image" else "job_id"
        if message.get("type") != f"{self.kind}.updated":
            return
        tracked = self.tracked.get(str(message.get(key)))
        if tracked is None or tracked.final(self.kind):
            return
        at = str(message.get("at") or "")
        if at and tracked.at and at < tracked.at:
            return
        state = message.get("state")
        if not isinstance(state, str):
            return
        progress = message.get("progress")
        self._change(tracked, state, at, progress if isinstance(progress, int) else None, message)

    def _change(
        self, tracked: Tracked, state: str, at: str, progress: int | None, source: dict[str, Any]
    ) -> None:
        if state == tracked.state and progress == tracked.progress:
            return
        if state != tracked.state:
            tracked.states.append(state)
        tracked.state, tracked.at = state, at or tracked.at
        tracked.progress = progress if progress is not None else tracked.progress
        if tracked.final(self.kind):
            tracked.reason = self._reason(tracked, source)
        self._on_change(tracked)

    def _reason(self, tracked: Tracked, source: dict[str, Any]) -> str | None:
        problems = IMAGE_PROBLEMS if self.kind == "image" else frozenset({"failed"})
        if tracked.state not in problems:
            return None
        reason = _reason_of(source, self.kind)
        if reason:
            return reason
        record = self._fetch(tracked.id)
        if record is not None:
            tracked.record = record
            return _reason_of(record, self.kind)
        return None

    def _fetch(self, item_id: str) -> dict[str, Any] | None:
        path = f"/images/{item_id}" if self.kind == "image" else f"/enhance/{item_id}"
        try:
            record = self.api.get(path)
        except NotFound:
            return None
        return record if isinstance(record, dict) else None

    def _catch_up(self) -> None:
        missing = self.pending()
        if missing:
            self._on_notice(f"live updates: catching up on {len(missing)} after the reconnect")
        for item_id in missing:
            record = self._fetch(item_id)
            tracked = self.tracked[item_id]
            if record is None or not isinstance(record.get("state"), str):
                continue
            tracked.record = record
            at = str(record.get("updated_at") or "")
            progress = record.get("progress")
            self._change(
                tracked, record["state"], at, progress if isinstance(progress, int) else None, record
            )


def _reason_of(data: dict[str, Any], kind: Kind) -> str | None:
    if kind == "job":
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        return str(data["reason"]) if data.get("reason") else None
    message = data.get("reason_message")
    code = data.get("reason")
    if message and code:
        return f"{code}: {message}"
    return str(message or code) if (message or code) else None
