"""The GPU fleet: one record per worker, kept fresh by heartbeats.

A worker is healthy while its last heartbeat is at most `HEALTHY_WITHIN_S` old (three missed 30 s
heartbeats, the old gateway's "3 failed checks")."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

HEARTBEAT_INTERVAL_S = 30
HEALTHY_WITHIN_S = 3 * HEARTBEAT_INTERVAL_S


class WorkerRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    worker_id: str
    url: str | None = None
    provider: str | None = None
    max_batch: int | None = None
    version: str | None = None
    registered_at: float
    heartbeat_at: float
    expires_at: int
    healthy: bool = Field(False, description="Computed on read: heartbeat within the last 90 s")


class GpuFleetDeployment(BaseModel):
    """What the GPU worker stack (infra/gpu-worker/stack.yaml) writes to its SSM parameter: a fleet that starts
    workers from zero when jobs wait consumes this deployment's gpu-jobs queue. Its existence is what counts;
    the fields are for people."""

    model_config = ConfigDict(extra="ignore")

    cluster: str | None = None
    service: str | None = None
    max_workers: int | None = None
    scales_from_zero: bool = True
