"""The one place that owns `logger`, `tracer` and `metrics` (service name and namespace come from the
POWERTOOLS_* variables the template sets in Globals)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()
