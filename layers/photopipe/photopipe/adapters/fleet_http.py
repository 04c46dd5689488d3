"""The GPU fleet over HTTP: a worker outside the AWS account (as the old GPU servers were) registers
through the API's `/webhook/*` routes with the shared secret. Registering again is the heartbeat."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any


@dataclass
class HttpFleetLink:
    """Registers through the API's `/webhook/*` routes with the shared secret (for a worker outside the
    AWS account, as the old GPU servers were). Registering again is the heartbeat."""

    api_url: str
    secret: str = field(repr=False)
    worker_id: str
    provider: str | None = None
    max_batch: int | None = None
    version: str | None = None
    timeout_s: float = 10.0

    def _post(self, path: str, body: dict[str, Any]) -> None:
        request = urllib.request.Request(  # noqa: S310 - an https/http URL from the worker's settings
            self.api_url.rstrip("/") + path,
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json", "x-fleet-secret": self.secret},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:  # noqa: S310
            resp.read()

    def register(self) -> None:
        body = {"worker_id": self.worker_id, "provider": self.provider, "max_batch": self.max_batch}
        if self.version:
            body["version"] = self.version
        self._post("/webhook/register", {k: v for k, v in body.items() if v is not None})

    def heartbeat(self) -> None:
        self.register()

    def unregister(self) -> None:
        self._post("/webhook/unregister", {"worker_id": self.worker_id})
