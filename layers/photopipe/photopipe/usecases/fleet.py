"""The GPU fleet: workers register, heartbeat and unregister; the API reports their health and refuses
enhancement when none is up (unless the deployment queues for scale-from-zero).

Replaces the old gateway's registry: the same three webhook routes and shared secret, but the secret lives
in Secrets Manager, is compared in constant time and is never logged, and health comes from heartbeats a
worker sends (a worker behind NAT or scaled to zero cannot be probed from outside)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from photopipe.adapters.fleet_deployment import FleetDeploymentParameter
from photopipe.adapters.workers import WorkersRepository
from photopipe.errors import BadRequestError, UnauthorizedError
from photopipe.models import HEALTHY_WITHIN_S, WorkerRecord
from photopipe.observability import logger

EXPORT_COMMAND = "photopipe models export --weights GFPGANv1.4.pth --out models/gfpgan"


@dataclass(frozen=True)
class FleetHealth:
    healthy: int
    unhealthy: int

    @property
    def total(self) -> int:
        return self.healthy + self.unhealthy


@dataclass(frozen=True)
class Fleet:
    workers: WorkersRepository
    # Returns the shared secret (read through the secrets cache, so a rotation takes effect).
    secret: Callable[[], str]
    # The GPU stack's parameter (the API's fleet): while it exists, jobs are queued with no worker up.
    deployment: FleetDeploymentParameter | None = None

    def authorize(self, presented: str | None) -> None:
        """Constant-time check of the shared secret; the value is never logged, either way."""
        if not presented:
            raise UnauthorizedError(
                "send the fleet's shared secret (X-Fleet-Secret header, or `secret` in the body)",
                code="fleet_secret_required",
            )
        expected = self.secret()
        if not hmac.compare_digest(presented.encode(), expected.encode()):
            logger.warning("fleet request with a wrong secret")
            raise UnauthorizedError("the fleet secret is not valid", code="invalid_fleet_secret")

    def register(
        self,
        worker_id: str | None,
        *,
        url: str | None = None,
        ip: str | None = None,
        port: int | None = None,
        provider: str | None = None,
        max_batch: int | None = None,
        version: str | None = None,
    ) -> WorkerRecord:
        """Register (or re-register) a worker. The old gateway's `{ip, port}` form still works: the worker
        id then defaults to `ip:port` and the URL to `http://ip:port`."""
        if url is None and ip:
            url = f"http://{ip}:{port or 8000}"
        if not worker_id:
            if not ip:
                raise BadRequestError("send a worker_id (or the old form: ip and port)", code="bad_request")
            worker_id = f"{ip}:{port or 8000}"
        record = self.workers.register(
            worker_id, url=url, provider=provider, max_batch=max_batch, version=version
        )
        logger.info("worker registered", extra={"worker_id": worker_id, "provider": provider})
        return record

    def heartbeat(self, worker_id: str) -> bool:
        return self.workers.heartbeat(worker_id)

    def unregister(self, worker_id: str) -> bool:
        removed = self.workers.unregister(worker_id)
        logger.info("worker unregistered", extra={"worker_id": worker_id, "was_registered": removed})
        return removed

    def servers(self) -> list[WorkerRecord]:
        return self.workers.list()

    def health(self) -> FleetHealth:
        workers = self.workers.list()
        healthy = sum(1 for w in workers if w.healthy)
        return FleetHealth(healthy=healthy, unhealthy=len(workers) - healthy)

    def unavailable_reason(self) -> str | None:
        """None when a job would run: a worker is healthy, or a GPU fleet that scales from zero is deployed
        (the queue's backlog starts a worker). Else what a person should know and do."""
        if self.health().healthy:
            return None
        if self.deployment is not None and self.deployment.read() is not None:
            logger.info("no worker up; the job is queued for the GPU fleet to scale from zero")
            return None
        return (
            f"no GPU fleet is deployed and no enhancement worker has reported in the last {HEALTHY_WITHIN_S} "
            "seconds, so the job would never run. Deploy the GPU worker stack (infra/gpu-worker/stack.yaml: it "
            "starts workers from zero when jobs wait) or start a worker. Running locally? Export the face model "
            f"once (`{EXPORT_COMMAND}`) and restart the local stack, which then starts a CPU worker."
        )
