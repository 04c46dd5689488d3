"""The fault suite, on the local stack (loopback only, each scenario bounded): the same S3 event delivered
three times and out of order; the model provider down and then back; the GPU worker killed with SIGKILL in
the middle of a batch; a poison message, dead-lettered with the reason on the photo and then replayed
with the DLQ tool. The 30 s outage at full length and the 1,000-upload load are in
`benchmarks/load_faults.py`.

Time is compressed where the code allows, keeping the ratios that matter: in AWS the classify queue gives
a failing message 3 deliveries 12 minutes apart, so a 30 s outage is far inside what is retried; here
redeliveries come `RETRY_DELAY_S` apart and the outage lasts `OUTAGE_S`, still inside 2 x RETRY_DELAY_S
(the third delivery is the last). The GPU worker's lease is 3 s instead of 180 s."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from boto3.dynamodb.types import TypeDeserializer
from PIL import Image

from photopipe import wiring
from photopipe_cli.dlq import DeadLetters
from photopipe_local import LocalStack
from tests.conftest import ROOT
from tests.e2e.conftest import LiveStack, photo_jpeg
from tests.e2e.test_local_stack import upload, wait_for_state
from tests.fakes.dashscope_server import FakeDashScope

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY = "sk-faults-0123456789"
RETRY_DELAY_S = 4
OUTAGE_S = 5.0
ANSWER = '{"category": "single_person", "confidence": 0.9, "reason": "one person"}'


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDashScope]:
    with FakeDashScope(api_key=KEY) as server:
        server.responder = lambda _image: ANSWER
        yield server


@pytest.fixture(scope="module")
def live(fake: FakeDashScope) -> Iterator[LiveStack]:
    wiring.reset()
    parameters.clear_caches()
    env = {
        "DASHSCOPE_API_KEY": KEY,
        "DASHSCOPE_HTTP_BASE_URL": fake.base_url,
        "ENHANCE_QUEUE_WHEN_NO_WORKERS": "true",  # the jobs are queued before the first worker starts
    }
    stack = LocalStack(
        ROOT / "template.yaml",
        port=0,
        stack_name="photopipe-faults",
        write_state=False,
        env_overrides=env,
        retry_delay_seconds=RETRY_DELAY_S,
    )
    with stack:
        yield LiveStack(stack)
    wiring.reset()
    parameters.clear_caches()


@pytest.fixture(scope="module")
def token(live: LiveStack) -> str:
    reg = live.post(
        "/api/v1/auth/register",
        json={"username": "faults", "email": "faults@example.com", "password": "a-faults-password"},
    )
    assert reg.status_code == 201, reg.text
    return str(reg.json()["token"])


def _photo(n: int) -> bytes:
    """Distinct photos (not near duplicates of each other): each costs its own model call."""
    from skimage import data

    sources = [data.astronaut, data.chelsea, data.coffee, data.rocket, data.camera]
    buf = io.BytesIO()
    Image.fromarray(sources[n % len(sources)]()).convert("RGB").resize((640, 480)).save(
        buf, "JPEG", quality=85
    )
    return buf.getvalue()


def _dlq_messages(live: LiveStack, logical_id: str) -> int:
    attributes = live.stack.clients.sqs.get_queue_attributes(  # type: ignore[union-attr]
        QueueUrl=live.stack.ref(logical_id),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.2)


def _s3(live: LiveStack) -> Any:
    return live.stack.clients.s3  # type: ignore[union-attr]


# ------------------------------------------------------------------ the same event, three times, out of order
def test_the_same_s3_event_three_times_and_out_of_order_gives_one_record_and_one_set_of_outputs(
    live: LiveStack, token: str, fake: FakeDashScope
) -> None:
    # GIVEN two photos uploaded, processed and classified
    a = upload(live, token, "a.jpg", _photo(0), "image/jpeg")
    b = upload(live, token, "b.jpg", _photo(1), "image/jpeg")
    assert wait_for_state(live, token, a["image_id"])["state"] == "classified"
    assert wait_for_state(live, token, b["image_id"])["state"] == "classified"
    live.wait_idle(60)
    calls = len(fake.llm_requests)
    before = live.get(f"/api/v1/images/{a['image_id']}", token=token).json()
    outputs = _outputs(live, a)

    # WHEN S3 delivers A's event three more times, interleaved with B's and after A was classified
    # (late and out of order), and classify gets A twice more too
    events = {name: _s3_event(live, body) for name, body in (("a", a), ("b", b))}
    queue = live.ingest_queue_url
    sqs = live.stack.clients.sqs  # type: ignore[union-attr]
    for name in ("a", "b", "a", "b", "a"):
        sqs.send_message(QueueUrl=queue, MessageBody=events[name])
    for _ in range(2):
        sqs.send_message(
            QueueUrl=live.stack.ref("ClassifyQueue"), MessageBody=json.dumps({"image_id": a["image_id"]})
        )
    live.wait_idle(60)

    # THEN there is still one record per photo, unchanged, one set of renditions (not rewritten), no new
    # model call, and nothing in a dead-letter queue
    after = live.get(f"/api/v1/images/{a['image_id']}", token=token).json()
    assert {k: v for k, v in after.items() if k != "urls"} == {k: v for k, v in before.items() if k != "urls"}
    assert _outputs(live, a) == outputs
    listed = live.get("/api/v1/images", token=token, params={"limit": "100"}).json()["items"]
    assert sorted(i["image_id"] for i in listed if i["image_id"] in {a["image_id"], b["image_id"]}) == sorted(
        [a["image_id"], b["image_id"]]
    )
    assert len(fake.llm_requests) == calls
    assert _dlq_messages(live, "IngestDeadLetterQueue") == _dlq_messages(live, "ClassifyDeadLetterQueue") == 0


def _outputs(live: LiveStack, upload_body: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    user_id = upload_body["key"].split("/")[1]
    prefix = f"derived/{user_id}/{upload_body['image_id']}/"
    listing = _s3(live).list_objects_v2(Bucket=live.bucket, Prefix=prefix)
    found = {o["Key"]: (o["ETag"], o["LastModified"]) for o in listing.get("Contents", [])}
    assert len(found) == 2, found  # thumb.webp and preview.jpg
    return found


def _s3_event(live: LiveStack, upload_body: dict[str, Any]) -> str:
    """The notification S3 sends for an upload (as moto does: the key URL-encoded)."""
    head = _s3(live).head_object(Bucket=live.bucket, Key=upload_body["key"])
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Post",
        "s3": {
            "bucket": {"name": live.bucket, "arn": f"arn:aws:s3:::{live.bucket}"},
            "object": {
                "key": quote_plus(upload_body["key"]),
                "size": head["ContentLength"],
                "eTag": head["ETag"].strip('"'),
            },
        },
    }
    return json.dumps({"Records": [record]})


# ------------------------------------------------------------------ the model provider down, then back
def test_the_model_provider_down_then_back_loses_nothing_and_caches_no_failure(
    live: LiveStack, token: str, fake: FakeDashScope
) -> None:
    # GIVEN the provider is down (connections refused)
    fake.stop()
    started = time.monotonic()
    try:
        # WHEN photos arrive during the outage
        bodies = [upload(live, token, f"outage-{n}.jpg", _photo(2 + n), "image/jpeg") for n in range(3)]
        _until(
            lambda: all(
                live.get(f"/api/v1/images/{b['image_id']}", token=token).json()["state"]
                == "classification_failed"
                for b in bodies
            ),
            30,
            "the photos tried and failed while the provider was down",
        )
        # they are waiting for a redelivery, and say so
        image = live.get(f"/api/v1/images/{bodies[0]['image_id']}", token=token).json()
        assert "will be retried" in image["reason_message"]
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))
    finally:
        fake.start()  # back, on the same port
    requests_when_back = len(fake.llm_requests)

    # THEN every photo is classified by the model, none went to the DLQ, and no failure was cached
    live.wait_idle(60)
    for body in bodies:
        image = live.get(f"/api/v1/images/{body['image_id']}", token=token).json()
        assert (image["state"], image["classification"]["source"]) == ("classified", "llm"), image
    assert _dlq_messages(live, "ClassifyDeadLetterQueue") == 0
    assert len(fake.llm_requests) - requests_when_back == len(bodies), "one answered call per photo"
    again = upload(live, token, "outage-0-again.jpg", _photo(2), "image/jpeg")
    copy = wait_for_state(live, token, again["image_id"])
    assert copy["classification"]["source"] == "exact_cache", "the answer after the outage is the cached one"


# ------------------------------------------------------------------ the GPU worker killed mid-batch
def _worker(live: LiveStack, worker_id: str, tmp_path: Path, **args: Any) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "tests.fakes.worker_process", "--worker-id", worker_id]
    for name, value in args.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    env = {**os.environ, **live.stack.environment, "POWERTOOLS_LOG_LEVEL": "WARNING"}
    log = (tmp_path / f"{worker_id}.log").open("wb")
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _completions(live: LiveStack) -> dict[str, int]:
    """How often each job moved into `completed`, read from the jobs table's stream."""
    streams = boto3.session.Session().client(
        "dynamodbstreams", endpoint_url=live.endpoint_url, region_name=live.stack.region
    )
    arn = live.stack.resource("JobsTable").attributes["StreamArn"]
    counts: dict[str, int] = {}
    deserialize = TypeDeserializer().deserialize
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                new = record["dynamodb"].get("NewImage", {})
                old = record["dynamodb"].get("OldImage", {})
                if (
                    new
                    and deserialize(new["state"]) == "completed"
                    and (not old or deserialize(old["state"]) != "completed")
                ):
                    job_id = str(deserialize(new["job_id"]))
                    counts[job_id] = counts.get(job_id, 0) + 1
            iterator = page.get("NextShardIterator") if page["Records"] else None
    return counts


def test_a_worker_killed_mid_batch_has_every_job_completed_exactly_once_by_its_successor(
    live: LiveStack, token: str, tmp_path: Path
) -> None:
    # GIVEN three queued enhancement jobs (one batch)
    photos = [
        upload(live, token, f"face-{n}.jpg", photo_jpeg((320 + 8 * n, 240)), "image/jpeg") for n in range(3)
    ]
    for body in photos:
        assert wait_for_state(live, token, body["image_id"])["state"] == "classified"
    resp = live.post(
        "/api/v1/enhance/batch", token=token, json={"image_ids": [p["image_id"] for p in photos]}
    )
    assert resp.status_code == 202, resp.text
    jobs = [j["job_id"] for j in resp.json()["jobs"]]

    # WHEN worker A claims them and is killed with SIGKILL while restoring their faces in one batch
    marker = tmp_path / "restoring"
    a = _worker(live, "worker-a", tmp_path, restore_seconds=600, started_restore=marker)
    try:
        _until(marker.exists, 60, "worker A started the batched restore")
        held = [live.get(f"/api/v1/enhance/{j}", token=token).json() for j in jobs]
        assert {j["state"] for j in held} == {"running"}
    finally:
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=10)
    assert a.returncode == -signal.SIGKILL

    # ... and worker B starts
    b = _worker(live, "worker-b", tmp_path)
    try:
        _until(
            lambda: all(
                live.get(f"/api/v1/enhance/{j}", token=token).json()["state"] == "completed" for j in jobs
            ),
            90,
            "worker B completed the jobs A held",
        )
    finally:
        b.send_signal(signal.SIGTERM)
        b.wait(timeout=30)

    # THEN each job completed exactly once, through the lease takeover, with its result written once
    completions = _completions(live)
    assert {j: completions.get(j) for j in jobs} == dict.fromkeys(jobs, 1)
    for job_id in jobs:
        job = live.get(f"/api/v1/enhance/{job_id}", token=token).json()
        assert (job["attempts"], job["progress"]) == (2, 100), job
        assert job["result_url"]
    results = _s3(live).list_objects_v2(Bucket=live.bucket, Prefix="enhanced/").get("Contents", [])
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in results) == sorted(f"{j}.jpg" for j in jobs)
    assert _dlq_messages(live, "GpuJobsDeadLetterQueue") == 0
    assert _dlq_messages(live, "GpuJobsQueue") == 0


# ------------------------------------------------------------------ a poison message
def test_a_poison_message_lands_in_the_dlq_with_the_reason_on_the_photo_and_can_be_replayed(
    live: LiveStack, token: str, fake: FakeDashScope
) -> None:
    # GIVEN a processed photo, never classified, whose preview is gone (a lifecycle rule, a hand-run
    # delete): every classify delivery of it fails
    user_id = live.get("/api/v1/profile", token=token).json()["user"]["user_id"]
    image_id = uuid.uuid4().hex
    preview_key = f"derived/{user_id}/{image_id}/preview.jpg"
    now = "2026-01-01T00:00:00.000000Z"
    images = (
        boto3.session.Session()
        .resource("dynamodb", endpoint_url=live.endpoint_url, region_name=live.stack.region)
        .Table(live.stack.name("ImagesTable"))
    )
    images.put_item(
        Item={
            "image_id": image_id,
            "user_id": user_id,
            "state": "processed",
            "filename": "poison.jpg",
            "original_key": f"originals/{user_id}/{image_id}/poison.jpg",
            "content_type": "image/jpeg",
            "sha256": uuid.uuid4().hex * 2,
            "preview_key": preview_key,
            "created_at": now,
            "updated_at": now,
        }
    )
    sqs = live.stack.clients.sqs  # type: ignore[union-attr]
    sqs.send_message(QueueUrl=live.stack.ref("ClassifyQueue"), MessageBody=json.dumps({"image_id": image_id}))

    # WHEN it has been delivered maxReceiveCount times
    # (then through the DLQ, where the dead-letter function records it, to the redrive queue, where it rests)
    _until(lambda: _dlq_messages(live, "ClassifyRedriveQueue") == 1, 120, "the message came to rest")

    # THEN the photo says why, and the DLQ tool shows the message with that reason
    image = live.get(f"/api/v1/images/{image_id}", token=token).json()
    assert (image["state"], image["reason"]) == ("classification_failed", "classification_gave_up")
    assert "dead-letter queue" in image["reason_message"]
    tool = DeadLetters(
        sqs=sqs,
        dynamodb=live.stack.clients.dynamodb,  # type: ignore[union-attr]
        queues={
            lid: live.stack.ref(lid) for lid, r in live.stack.physical.items() if r.type == "AWS::SQS::Queue"
        },
        tables={"IMAGES_TABLE": live.stack.name("ImagesTable"), "JOBS_TABLE": live.stack.name("JobsTable")},
    )
    assert {q.name: q.source for q in tool.dead_letter_queues()} == {
        "IngestRedriveQueue": "IngestQueue",
        "ClassifyRedriveQueue": "ClassifyQueue",
        "GpuJobsRedriveQueue": "GpuJobsQueue",
        "ExportsRedriveQueue": "ExportsQueue",
        "OrderChecksDeadLetterQueue": "OrderChecksQueue",
    }
    letters = tool.list_letters("ClassifyRedriveQueue")
    assert [(d.subject.kind, d.subject.id, d.subject.reason) for d in letters] == [
        ("image", image_id, "classification_gave_up")
    ]
    assert tool.show(letters[0].message_id).subject.reason_message == image["reason_message"]
    assert _dlq_messages(live, "ClassifyRedriveQueue") == 1, "looking did not move anything"

    # WHEN the cause is fixed and the message replayed
    _s3(live).put_object(Bucket=live.bucket, Key=preview_key, Body=_photo(3), ContentType="image/jpeg")
    calls = len(fake.llm_requests)
    moved = tool.redrive("ClassifyRedriveQueue")

    # THEN it is classified (by the model: its bytes were never seen) and the DLQ is empty
    assert [m.message_id for m in moved] == [letters[0].message_id]
    live.wait_idle(60)
    image = live.get(f"/api/v1/images/{image_id}", token=token).json()
    assert (image["state"], image["classification"]["source"]) == ("classified", "llm")
    assert len(fake.llm_requests) == calls + 1
    assert _dlq_messages(live, "ClassifyRedriveQueue") == 0
