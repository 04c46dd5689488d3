"""GPU worker entry point (the container's command): settings from the environment, the face model fetched
from the models bucket when `PHOTOPIPE_MODEL_S3_URI` is set, one ONNX session created and warmed up, then
the worker loop until SIGTERM (ECS stopping the task on scale-in or deploy), which finishes the work held,
stops polling and unregisters from the fleet.

    python infra/gpu-worker/main.py        # env: see photopipe.settings.WorkerSettings
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

from photopipe.adapters.aws import client as aws_client
from photopipe.errors import ConfigurationError
from photopipe.observability import logger
from photopipe.settings import WorkerSettings
from photopipe.usecases.enhance_worker import install_signal_handlers
from photopipe.wiring import gpu_worker


def fetch_model(uri: str, model_dir: Path) -> None:
    """Copy `s3://bucket/prefix/` (manifest.json and the ONNX files) into `model_dir`. The session checks
    every file's sha256 against the manifest before it is used."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ConfigurationError(f"PHOTOPIPE_MODEL_S3_URI must look like s3://bucket/prefix/, got {uri!r}")
    bucket, prefix = parsed.netloc, parsed.path.lstrip("/")
    s3 = aws_client("s3")
    model_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            name = obj["Key"][len(prefix) :].lstrip("/")
            if not name or "/" in name:
                continue
            target = model_dir / name
            if target.exists() and target.stat().st_size == obj["Size"]:
                continue
            s3.download_file(bucket, obj["Key"], str(target))
            count += 1
    logger.info("model files fetched", extra={"uri": uri, "downloaded": count, "dir": str(model_dir)})


def main() -> int:
    logging.basicConfig(level=os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO"))
    try:
        settings = WorkerSettings.from_env()
        model_uri = os.environ.get("PHOTOPIPE_MODEL_S3_URI")
        if model_uri:
            fetch_model(model_uri, Path(settings.model_dir))
        upscaler_uri = os.environ.get("PHOTOPIPE_UPSCALER_MODEL_S3_URI")  # Real-ESRGAN, optional
        if upscaler_uri:
            if not settings.upscaler_model_dir:
                raise ConfigurationError(
                    "PHOTOPIPE_UPSCALER_MODEL_S3_URI is set but PHOTOPIPE_UPSCALER_MODEL_DIR (where to put it) is not"
                )
            fetch_model(upscaler_uri, Path(settings.upscaler_model_dir))
        # creates and warms up the ONNX session (engines built, CUDA graphs captured): fail fast, before polling;
        # in the GPU image it refuses to run on the CPU provider unless PHOTOPIPE_ALLOW_CPU=1
        worker = gpu_worker(settings)
    except ConfigurationError as e:
        logger.error("the GPU worker cannot start", extra={"error": e.message, "code": e.code})
        return 2
    install_signal_handlers(worker)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
