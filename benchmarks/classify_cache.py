"""Classification cache on a workload with a stated duplicate rate; prints one JSON object.

    .venv/bin/python benchmarks/classify_cache.py [--photos 60] [--duplicate-rate 0.3] [--llm-latency 1.2]

Every photo goes through the real ingest and classify handlers against moto (in-process, resources from
`template.yaml`) and a fake DashScope on loopback reached through the real SDK. A third of the duplicates
are the same bytes uploaded again, two thirds the same picture re-encoded and resized (what phones and chat
apps send on). The baseline in the same run is the same workload without a cache: one LLM call per photo.
Reported: LLM calls made vs the baseline, calls and cost saved, and the classify handler's latency on the
hit path against the miss path (the fake answers after `--llm-latency` seconds, like a real vision model)."""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers" / "photopipe"))
for name, value in {
    "POWERTOOLS_SERVICE_NAME": "photopipe",
    "POWERTOOLS_METRICS_NAMESPACE": "photopipe",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ[name] = value
os.environ.pop("AWS_ENDPOINT_URL", None)

import boto3  # noqa: E402
import numpy as np  # noqa: E402
from moto import mock_aws  # noqa: E402
from PIL import Image  # noqa: E402

from photopipe import wiring  # noqa: E402
from photopipe.models import ImageRecord, ImageState, utcnow_iso  # noqa: E402
from photopipe_local.resources import AwsClients, create_resources  # noqa: E402
from photopipe_local.runtime import functions_environment  # noqa: E402
from photopipe_local.template import Template  # noqa: E402
from tests.conftest import FakeContext, load_event, load_handler  # noqa: E402
from tests.fakes.dashscope_server import FakeDashScope  # noqa: E402

KEY = "sk-bench-0123456789"
ANSWER = '{"category": "other", "confidence": 0.8, "reason": "benchmark"}'


def workload(n: int, duplicate_rate: float, seed: int = 3) -> list[tuple[str, bytes]]:
    """(kind, JPEG bytes): distinct pictures are crops of bundled photos at distinct places and zooms."""
    from skimage import data

    rng = np.random.default_rng(seed)
    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.camera()]
    n_dup = round(n * duplicate_rate)
    originals: list[bytes] = []
    for i in range(n - n_dup):
        src = Image.fromarray(sources[i % len(sources)]).convert("RGB")
        side = int(rng.integers(160, min(src.size) - 8))
        x, y = int(rng.integers(0, src.width - side)), int(rng.integers(0, src.height - side))
        crop = src.crop((x, y, x + side, y + side)).resize((960, 960), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=90)
        originals.append(buf.getvalue())
    photos = [("distinct", b) for b in originals]
    for j in range(n_dup):
        base = originals[int(rng.integers(0, len(originals)))]
        if j % 3 == 0:
            photos.append(("exact_copy", base))
        else:
            img = Image.open(io.BytesIO(base))
            buf = io.BytesIO()
            img.resize((img.width // 2, img.height // 2)).save(buf, "JPEG", quality=int(rng.integers(40, 80)))
            photos.append(("reencoded_copy", buf.getvalue()))
    order = rng.permutation(len(photos))
    return [photos[i] for i in order]


class Pipeline:
    def __init__(self) -> None:
        template = Template(ROOT / "template.yaml", stack_name="photopipe-bench", region="us-east-1")
        clients = AwsClients.for_endpoint(None, "us-east-1")  # moto's mock_aws() intercepts boto3's endpoints
        physical = create_resources(template, clients)
        self.env = functions_environment(template.functions(physical))
        os.environ.update(self.env)
        self.s3 = clients.s3
        self.table = boto3.resource("dynamodb").Table(self.env["IMAGES_TABLE"])
        self.ingest = load_handler("ingest").handler
        self.classify = load_handler("classify").handler

    def ingest_photo(self, data: bytes) -> str:
        user_id, image_id = uuid.uuid4().hex, uuid.uuid4().hex
        key = f"originals/{user_id}/{image_id}/photo.jpg"
        now = utcnow_iso()
        record = ImageRecord(
            image_id=image_id,
            user_id=user_id,
            state=ImageState.PENDING_UPLOAD,
            filename="photo.jpg",
            original_key=key,
            content_type="image/jpeg",
            created_at=now,
            updated_at=now,
        )
        self.table.put_item(Item=record.model_dump(mode="json", exclude_none=True))
        etag = self.s3.put_object(Bucket=self.env["MEDIA_BUCKET"], Key=key, Body=data)["ETag"].strip('"')
        event = load_event("ingest-upload.json")
        body = json.loads(event["Records"][0]["body"])
        body["Records"][0]["s3"]["object"].update(key=key, eTag=etag, size=len(data))
        event["Records"][0]["body"] = json.dumps(body)
        assert self.ingest(event, FakeContext()) == {"batchItemFailures": []}
        return image_id

    def classify_photo(self, image_id: str) -> tuple[str, float]:
        event = load_event("classify-image.json")
        event["Records"][0]["body"] = json.dumps({"image_id": image_id})
        started = time.perf_counter()
        result = self.classify(event, FakeContext(timeout_ms=120_000))
        elapsed = (time.perf_counter() - started) * 1000
        assert result == {"batchItemFailures": []}, result
        item: dict[str, Any] = self.table.get_item(Key={"image_id": image_id})["Item"]
        return str(item["classification"]["source"]), elapsed


def pct(values: list[float], q: float) -> float:
    return round(sorted(values)[min(len(values) - 1, int(q * len(values)))], 1) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--duplicate-rate", type=float, default=0.3, help="the old service assumed 30%%")
    parser.add_argument("--llm-latency", type=float, default=1.2, help="seconds the fake model takes")
    args = parser.parse_args()

    photos = workload(args.photos, args.duplicate_rate)
    latencies: dict[str, list[float]] = {}
    by_kind: dict[str, dict[str, int]] = {}
    with mock_aws(), FakeDashScope(api_key=KEY) as fake:
        fake.responder = lambda _image: ANSWER
        fake.delay = args.llm_latency
        os.environ.update({"DASHSCOPE_API_KEY": KEY, "DASHSCOPE_HTTP_BASE_URL": fake.base_url})
        wiring.reset()
        pipeline = Pipeline()
        for kind, data in photos:
            image_id = pipeline.ingest_photo(data)
            source, ms = pipeline.classify_photo(image_id)
            latencies.setdefault(source, []).append(ms)
            by_kind.setdefault(kind, {}).setdefault(source, 0)
            by_kind[kind][source] += 1
        calls = len(fake.requests)
        usage = fake.usage_sent

    baseline_calls = len(photos)
    price_in, price_out = 0.0015, 0.0045  # the defaults in settings (CNY per 1,000 tokens)
    cost_per_call = (usage.input_tokens * price_in + usage.output_tokens * price_out) / 1000 / max(calls, 1)
    hits = latencies.get("exact_cache", []) + latencies.get("near_duplicate", [])
    misses = latencies.get("llm", [])
    duplicates = sum(1 for kind, _ in photos if kind != "distinct")
    print(
        json.dumps(
            {
                "benchmark": "classify_cache",
                "workload": {
                    "photos": len(photos),
                    "duplicate_rate": args.duplicate_rate,
                    "duplicates": duplicates,
                    "exact_copies": sum(1 for kind, _ in photos if kind == "exact_copy"),
                    "reencoded_copies": sum(1 for kind, _ in photos if kind == "reencoded_copy"),
                    "fake_llm_latency_s": args.llm_latency,
                },
                "outcome_by_kind": by_kind,
                "llm_calls": calls,
                "baseline_llm_calls_without_cache": baseline_calls,
                "llm_calls_saved": baseline_calls - calls,
                "llm_calls_saved_ratio": round((baseline_calls - calls) / baseline_calls, 4),
                "duplicates_served_from_cache_ratio": round(len(hits) / duplicates, 4)
                if duplicates
                else None,
                "estimated_cost_saved_cny": round((baseline_calls - calls) * cost_per_call, 6),
                "handler_latency_ms": {
                    "hit_p50": pct(hits, 0.5),
                    "hit_p95": pct(hits, 0.95),
                    "exact_hit_p50": pct(latencies.get("exact_cache", []), 0.5),
                    "near_hit_p50": pct(latencies.get("near_duplicate", []), 0.5),
                    "miss_p50": pct(misses, 0.5),
                    "miss_p95": pct(misses, 0.95),
                    "miss_over_hit_p50": round(statistics.median(misses) / statistics.median(hits), 1)
                    if hits and misses
                    else None,
                },
                # Photos arrive in random order, so a copy may come before its original: what must hold is
                # one model call per distinct picture (no missed duplicate, no false hit between pictures).
                "pass": {"one_llm_call_per_distinct_picture": calls == len(photos) - duplicates},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
