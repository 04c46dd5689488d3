"""Is a GPU fleet that scales from zero deployed? The GPU worker stack writes an SSM parameter named after the
gpu-jobs queue it consumes (`/photopipe/gpu-fleet/<queue name>`) and deleting the stack removes it, so the
API reads that instead of a setting someone must keep in step.

The answer is cached for a minute, absent included: Powertools' parameter cache keeps found values only, and
SSM's GetParameter throughput is shared by the whole account."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from photopipe.adapters.aws import client as make_client
from photopipe.adapters.aws import error_code, translate
from photopipe.models import GpuFleetDeployment
from photopipe.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient


class FleetDeploymentParameter:
    def __init__(
        self,
        name: str,
        client: SSMClient | None = None,
        *,
        max_age_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._ssm: SSMClient = client or make_client("ssm")
        self._max_age_s = max_age_s
        self._clock = clock
        self._cached: tuple[float, GpuFleetDeployment | None] | None = None

    def read(self) -> GpuFleetDeployment | None:
        """The deployed fleet, or None when no GPU stack is deployed for this queue."""
        now = self._clock()
        if self._cached is not None and now - self._cached[0] < self._max_age_s:
            return self._cached[1]
        try:
            value = self._ssm.get_parameter(Name=self.name)["Parameter"].get("Value", "")
        except ClientError as e:
            if error_code(e) != "ParameterNotFound":
                raise translate(e, f"reading the SSM parameter {self.name}") from e
            deployment = None
        except BotoCoreError as e:
            raise translate(e, f"reading the SSM parameter {self.name}") from e
        else:
            try:
                deployment = GpuFleetDeployment.model_validate(json.loads(value))
            except (json.JSONDecodeError, ValidationError):
                logger.warning(
                    "the GPU fleet parameter is not the JSON its stack writes", extra={"name": self.name}
                )
                deployment = GpuFleetDeployment()  # it exists: a fleet is deployed
        self._cached = (now, deployment)
        return deployment
