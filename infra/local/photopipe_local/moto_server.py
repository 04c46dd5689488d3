"""moto as the local stack runs it: `python -m photopipe_local.moto_server -H HOST -p PORT` is `moto_server`
with `apply_fixes()` first (`MotoServer` calls it too when moto runs in a thread of the stack's process).

The fixes change how long moto 5.2.5's SQS takes, not what it answers. ReceiveMessage checks every message it
returns against the retention period through `get_queue_attributes`, and that recomputes all of the queue's
attributes, each `ApproximateNumberOf*` a pass over every message in the queue, three times per attribute
asked for. A receive of 10 cost 30 such recomputations: O(backlog) per message, so the ingest queue of a big
upload (hundreds of photos waiting) took seconds per receive and throughput fell with the backlog.

Every request also finds its backend under one lock: moto lists its own package directory (an `isdir` per
entry) and then tries the URL patterns of every service in turn. The answer depends on the host alone, so
it is remembered per host. The child process does not log each request (its output is dropped anyway).
Drop a fix once moto does the same by itself."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any

from moto.core.utils import unix_time
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.sqs.exceptions import InvalidAttributeName
from moto.sqs.models import Message, SQSBackend

_backend_for_host = functools.lru_cache(maxsize=1024)(DomainDispatcherApplication.get_backend_for_host)


def _retained(self: SQSBackend, queue_name: str, message: Message) -> bool:
    """moto's own test, reading the one attribute it needs."""
    retention_period = self.get_queue(queue_name).message_retention_period  # type: ignore[attr-defined]
    return bool(retention_period + message.sent_timestamp / 1000 > unix_time())  # type: ignore[operator]


def _queue_attributes(self: SQSBackend, queue_name: str, attribute_names: list[str]) -> dict[str, Any]:
    """moto's `get_queue_attributes`, computing the queue's attributes once."""
    queue = self.get_queue(queue_name)
    if not attribute_names:
        return {}
    valid_names = ["All", *queue.BASE_ATTRIBUTES, *queue.FIFO_ATTRIBUTES, *queue.KMS_ATTRIBUTES]
    if (invalid := next((n for n in attribute_names if n not in valid_names), None)) is not None:
        raise InvalidAttributeName(invalid)
    attributes: dict[str, Any] = queue.attributes
    if "All" in attribute_names:
        return attributes
    return {name: attributes[name] for name in attribute_names if attributes.get(name) is not None}


def _get_backend_for_host(self: DomainDispatcherApplication, host: str | None) -> Any:
    """moto's lookup, once per host (the dispatcher is one object per server, kept for its lifetime)."""
    return _backend_for_host(self, host)


def apply_fixes() -> None:
    """Patch moto's SQS backend and request dispatcher in this process (idempotent)."""
    SQSBackend.is_message_valid_based_on_retention_period = _retained  # type: ignore[method-assign]
    SQSBackend.get_queue_attributes = _queue_attributes  # type: ignore[method-assign]
    DomainDispatcherApplication.get_backend_for_host = _get_backend_for_host  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    from moto.server import main as moto_main

    apply_fixes()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # errors still reach stderr; requests do not
    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
