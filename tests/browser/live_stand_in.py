"""A stand-in for the WebSocket API on the local gateway, for the browser tests only, until the live-updates
branch lands: `/ws?token=JWT` checked with the API's own token rules, then `image.updated` / `job.updated`
messages in the contract's shape whenever one of the user's photos or jobs changes state or progress.

It watches the images and jobs tables (the owner indexes, a few times a second: the stand-in's polling is on
the server side, where the notify function's DynamoDB stream will be; the UI itself never polls). The test
stack mounts it only when the gateway has no `/ws` of its own, so once the real WebSocket API is merged the
journeys run against it without a change here."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from photopipe.adapters.images import ImagesRepository
from photopipe.adapters.jobs import JobsRepository
from photopipe.errors import PhotopipeError
from photopipe.wiring import api_services

WATCH_INTERVAL_S = 0.25


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LiveStandIn:
    def __init__(self) -> None:
        self.connections = 0

    def route(self) -> WebSocketRoute:
        return WebSocketRoute("/ws", self._serve)

    def _snapshot(self, user_id: str) -> dict[tuple[str, str], tuple[Any, ...]]:
        settings = api_services().settings
        images, _ = ImagesRepository(settings.images_table).list_by_owner(user_id, limit=1000)
        jobs = JobsRepository(settings.jobs_table).list_by_owner(user_id, limit=1000)
        seen: dict[tuple[str, str], tuple[Any, ...]] = {}
        for image in images:
            seen[("image", image.image_id)] = (image.state.value, image.reason)
        for job in jobs:
            seen[("job", job.job_id)] = (job.state.value, job.progress)
        return seen

    async def _serve(self, websocket: WebSocket) -> None:
        token = websocket.query_params.get("token") or ""
        try:
            claims = await asyncio.to_thread(api_services().accounts.authenticate, f"Bearer {token}")
        except PhotopipeError:
            await websocket.close(code=1008)  # before accept: the handshake is refused (HTTP 403)
            return
        await websocket.accept()
        self.connections += 1
        watcher = asyncio.create_task(self._watch(websocket, claims.user_id))
        try:
            while True:
                await websocket.receive_text()  # {"action": "ping"} and the like: nothing to answer
        except WebSocketDisconnect:
            pass
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch(self, websocket: WebSocket, user_id: str) -> None:
        last = await asyncio.to_thread(self._snapshot, user_id)
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            now = await asyncio.to_thread(self._snapshot, user_id)
            for (kind, item_id), value in now.items():
                if last.get((kind, item_id)) == value:
                    continue
                if kind == "image":
                    message = {"type": "image.updated", "image_id": item_id, "state": value[0], "at": _now()}
                    if value[1]:
                        message["reason"] = value[1]
                else:
                    message = {
                        "type": "job.updated",
                        "job_id": item_id,
                        "state": value[0],
                        "progress": value[1],
                        "at": _now(),
                    }
                await websocket.send_json(message)
            last = now
