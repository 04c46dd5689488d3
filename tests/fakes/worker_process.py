"""A GPU worker in a process of its own, for the fault tests: the real `GpuWorker` loop (claim, lease,
keep-alive, batched restore, conditional completion) against the stack named by the environment, with the
stand-in face model of `tests.fakes.enhance` and short leases, so a takeover happens in seconds.

    python -m tests.fakes.worker_process --worker-id A --restore-seconds 600 --started-restore FILE

`--restore-seconds` makes every batched restore take that long (the test kills the process while it
sleeps there: mid-batch); `--started-restore` is a file written when a restore starts (the test waits for
it, so the kill lands mid-batch and not before). Runs until SIGTERM (graceful) or SIGKILL (not)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from photopipe.adapters.jobs import JobsRepository
from photopipe.adapters.s3 import MediaStore
from photopipe.adapters.sqs import Queue
from photopipe.adapters.workers import WorkersRepository
from photopipe.usecases.enhance_worker import (
    DirectFleetLink,
    GpuWorker,
    WorkerConfig,
    install_signal_handlers,
)
from photopipe.usecases.fleet import Fleet
from tests.fakes.enhance import FakeEnhancer, InvertingRestorer


class SlowRestorer(InvertingRestorer):
    def __init__(self, seconds: float, started: Path | None, max_batch: int = 8) -> None:
        super().__init__(max_batch=max_batch)
        self.seconds = seconds
        self.started = started

    def restore(self, faces: np.ndarray) -> np.ndarray:
        if self.started is not None:
            self.started.write_text(f"{faces.shape[0]} faces\n")
        time.sleep(self.seconds)
        return super().restore(faces)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--restore-seconds", type=float, default=0.0)
    parser.add_argument("--started-restore", type=Path, default=None)
    parser.add_argument("--lease-s", type=float, default=3.0)
    args = parser.parse_args()

    env = os.environ
    fleet = Fleet(workers=WorkersRepository(env["WORKERS_TABLE"]), secret=lambda: "")
    worker = GpuWorker(
        jobs=JobsRepository(env["JOBS_TABLE"]),
        media=MediaStore(env["MEDIA_BUCKET"]),
        queue=Queue(env["GPU_JOBS_QUEUE_URL"]),
        restorer=SlowRestorer(args.restore_seconds, args.started_restore),
        enhancer=FakeEnhancer(),
        config=WorkerConfig(
            worker_id=args.worker_id,
            poll_wait_s=1,
            batch_wait_s=1.0,
            visibility_s=4,
            lease_s=args.lease_s,
            keepalive_s=1.0,
            retry_delay_s=1,
        ),
        fleet=DirectFleetLink(fleet, args.worker_id, provider="CPUExecutionProvider", max_batch=8),
    )
    install_signal_handlers(worker)
    worker.run()


if __name__ == "__main__":
    main()
