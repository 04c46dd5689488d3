"""Exports: one message from the API → the batch's ZIP at `exports/{user_id}/{batch_id}.zip`, streamed.

Each result is copied from its S3 body into the ZIP in chunks, and the ZIP goes out through a multipart
upload part by part: memory stays at about one part whatever the batch's size. A ZIP that exists is not
written again (the API may ask several times while it is being prepared)."""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from photopipe.adapters.jobs import JobsRepository
from photopipe.adapters.s3 import MIN_PART_BYTES, MediaStore
from photopipe.models import JobState, export_key
from photopipe.observability import logger, metrics, tracer

COPY_CHUNK = 1024 * 1024


@dataclass
class Exporter:
    jobs: JobsRepository
    media: MediaStore
    part_size: int = 8 * MIN_PART_BYTES // 5

    @tracer.capture_method
    def export(self, user_id: str, batch_id: str) -> dict[str, Any]:
        key = export_key(user_id, batch_id)
        if self.media.exists(key):
            return {"outcome": "exists", "key": key}
        jobs = [j for j in self.jobs.list_by_batch(batch_id) if j.user_id == user_id]
        jobs.sort(key=lambda j: (j.created_at, j.job_id))
        done = [j for j in jobs if j.state == JobState.COMPLETED and j.result_key]
        if not done:
            logger.warning("nothing to export", extra={"batch_id": batch_id, "jobs": len(jobs)})
            return {"outcome": "empty", "key": key}
        manifest: list[dict[str, Any]] = []
        with (
            self.media.writer(key, content_type="application/zip", part_size=self.part_size) as out,
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive,
        ):
            for n, job in enumerate(jobs, start=1):
                entry: dict[str, Any] = {"job_id": job.job_id, "image_id": job.image_id, "state": job.state}
                if job in done:
                    assert job.result_key is not None
                    name = f"{n:03d}-{job.image_id}.jpg"
                    stored = self.media.open(job.result_key)
                    # JPEGs do not compress: stored, streamed in chunks (force_zip64: size unknown up front).
                    with stored.body, archive.open(name, "w", force_zip64=stored.size > 0x7FFFFFFF) as member:
                        shutil.copyfileobj(stored.body, member, COPY_CHUNK)
                    entry["file"] = name
                elif job.error is not None:
                    entry["error"] = job.error.model_dump()
                manifest.append(entry)
            archive.writestr("manifest.json", json.dumps({"batch_id": batch_id, "jobs": manifest}, indent=2))
        logger.info(
            "batch exported", extra={"batch_id": batch_id, "files": len(done), "key": key, "parts": out.parts}
        )
        metrics.add_metric(name="BatchExports", unit=MetricUnit.Count, value=1)
        return {"outcome": "written", "key": key, "files": len(done), "parts": out.parts}
