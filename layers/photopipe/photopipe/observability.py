"""The one place that owns `logger`, `tracer` and `metrics` (service name and namespace come from the
POWERTOOLS_* variables the template sets in Globals).

Log levels: an expected failure (a refusal a caller can act on, a throttled provider the queue retries) is
logged once, at INFO or WARNING, by the code that knows what it means, without a stack trace; a fault is
logged at ERROR with one. Powertools' tracer logs every exception leaving a traced method at ERROR with a
trace; the filter below drops those lines for expected failures (errors whose `is_expected` is true), so
an ERROR in the logs always means something to look at."""

from __future__ import annotations

import logging

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()


class ExpectedFailuresFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return getattr(error, "is_expected", False) is not True


logging.getLogger("aws_lambda_powertools.tracing.tracer").addFilter(ExpectedFailuresFilter())
