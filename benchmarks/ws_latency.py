"""Live updates on the local stack: how soon after an upload a client hears about it over the WebSocket, against
polling the HTTP API; prints one JSON object.

    .venv/bin/python benchmarks/ws_latency.py [--photos 20] [--poll-interval 0.25]

For each photo, one at a time, the clock starts when the presigned POST of the file returns. Measured:
- `first_update_s`: the first `image.updated` on the socket after that (the first state past
  `pending_upload`, which `POST /uploads` itself announces), i.e. upload -> first update;
- `socket_processed_s`: the `image.updated` saying `processed` (or `rejected`);
- `write_to_socket_s`: for every update, its arrival minus its `at` (when the table was written): the
  cost of the live path itself (stream poll, notify function, `@connections` post), pipeline excluded;
- the baseline, in the same run and for the same photo: `poll_processed_s`, when a client polling
  `GET /api/v1/images/{id}` every `--poll-interval` seconds (what a client without the socket does) first sees
  `processed` or a later state. `speedup_p50` = poll p50 / socket p50 for `processed`."""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "photopipe"))
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "photopipe")

from websockets.sync.client import connect  # noqa: E402

from photopipe_local import LocalStack  # noqa: E402

DONE = {"processed", "classified", "classification_skipped", "classification_failed", "rejected", "failed"}


def photo(i: int) -> bytes:
    from skimage import data

    rng = np.random.default_rng(i)
    base = Image.fromarray([data.astronaut(), data.chelsea(), data.coffee()][i % 3]).resize((1600, 1200))
    noisy = np.asarray(base).astype(np.int16) + rng.normal(0, 4, (1200, 1600, 3)).astype(np.int16)
    buf = io.BytesIO()
    Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


class Listener(threading.Thread):
    """Reads the socket; records when each message arrived."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.socket = connect(url, open_timeout=10)
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self.lags: list[float] = []  # arrival (wall clock) minus the message's `at`
        self.lock = threading.Lock()

    def run(self) -> None:
        for frame in self.socket:
            message, now = json.loads(frame), time.time()
            written = (
                datetime.strptime(message["at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
            )
            with self.lock:
                self.arrivals.append((time.perf_counter(), message))
                self.lags.append(now - written)

    def first(self, image_id: str, since: float, states: set[str] | None = None) -> float | None:
        with self.lock:
            for at, message in self.arrivals:
                wanted = message.get("image_id") == image_id and at >= since
                if (
                    wanted
                    and message["state"] != "pending_upload"
                    and (states is None or message["state"] in states)
                ):
                    return at
        return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 3)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 0.5),
        "p95": percentile(values, 0.95),
        "mean": round(statistics.fmean(values), 3),
    }


def run(stack: LocalStack, photos: int, poll_interval: float) -> dict[str, Any]:
    api = f"{stack.api_url}/api/v1"
    body = {"username": "bench-live", "email": "bench-live@example.com", "password": "benchmark-password"}
    token = requests.post(f"{api}/auth/register", json=body, timeout=30).json()["token"]
    headers = {"authorization": f"Bearer {token}"}
    websocket_url = requests.get(f"{api}/info", timeout=30).json()["websocket_url"]
    listener = Listener(f"{websocket_url}?token={token}")
    listener.start()
    first, processed, polled, polls = [], [], [], 0
    for i in range(photos):
        data = photo(i)
        name = f"p{i}.jpg"
        meta: dict[str, Any] = {"filename": name, "content_type": "image/jpeg", "size": len(data)}
        upload = requests.post(f"{api}/uploads", headers=headers, json=meta, timeout=30).json()
        fields, url = upload["upload"]["fields"], upload["upload"]["url"]
        requests.post(url, data=fields, files={"file": (name, data)}, timeout=60).raise_for_status()
        started, image_id = time.perf_counter(), upload["image_id"]
        seen_by_polling = None
        deadline = started + 120
        while time.perf_counter() < deadline:
            if seen_by_polling is None:
                polls += 1
                state = requests.get(f"{api}/images/{image_id}", headers=headers, timeout=30).json()["state"]
                seen_by_polling = time.perf_counter() if state in DONE else None
            if seen_by_polling is not None and listener.first(image_id, started, {"processed", "rejected"}):
                break
            time.sleep(poll_interval)
        socket_processed = listener.first(image_id, started, {"processed", "rejected"})
        socket_first = listener.first(image_id, started)
        if seen_by_polling is None or socket_processed is None or socket_first is None:
            raise SystemExit(json.dumps({"benchmark": "ws_latency", "error": f"photo {i} never finished"}))
        first.append(socket_first - started)
        processed.append(socket_processed - started)
        polled.append(seen_by_polling - started)
        stack.wait_idle(60)  # classification done: the next photo starts on a quiet stack
    listener.socket.close()
    return {
        "first_update_s": summary(first),
        "socket_processed_s": summary(processed),
        "write_to_socket_s": summary(listener.lags),
        "baseline_poll_processed_s": summary(polled),
        "polling_requests": polls,
        "speedup_p50": round(percentile(polled, 0.5) / max(percentile(processed, 0.5), 1e-3), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument(
        "--poll-interval", type=float, default=0.25, help="seconds between the baseline's GETs"
    )
    args = parser.parse_args()
    quiet = {"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}  # stdout: JSON only
    with LocalStack(
        ROOT / "template.yaml",
        port=0,
        stack_name="photopipe-bench-ws",
        write_state=False,
        env_overrides=quiet,
    ) as stack:
        result = run(stack, args.photos, args.poll_interval)
    print(
        json.dumps(
            {
                "benchmark": "ws_latency",
                "environment": {"python": platform.python_version(), "cpus": os.cpu_count()},
                "workload": {
                    "photos": args.photos,
                    "size": "1600x1200 JPEG",
                    "poll_interval_s": args.poll_interval,
                },
                **result,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
