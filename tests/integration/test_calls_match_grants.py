"""The other half of the least-privilege table (tests/unit/test_least_privilege.py): run each function on its
real work against moto, record every AWS call it makes (botocore's `_make_api_call`, under every client,
Powertools' own included), turn each into the IAM action and resource AWS would check, and find it granted
in the table. moto enforces no IAM: without this, a call the template forgot to grant fails only in AWS.

Presigning makes no call (it only signs): the table's presign lines are checked by the API tests' links."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from fnmatch import fnmatch
from typing import Any

import botocore.client
import pytest

from photopipe import wiring
from photopipe.models import ImageState
from tests.conftest import FakeContext, load_event, load_handler
from tests.fakes.dashscope_server import FakeDashScope
from tests.integration.conftest import ApiClient, Stack, jpeg_bytes
from tests.integration.enhance_support import fleet_secret, make_worker, processed_image, register_user
from tests.unit.template_support import translated_template
from tests.unit.test_least_privilege import BUCKET, EXPECTED, LISTED_PREFIXES, _objects, _queue, _table

Call = tuple[str, str, dict[str, Any]]


def _kebab(logical_id: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", logical_id).lower()


@pytest.fixture(scope="module")
def logical_ids() -> dict[str, str]:
    """The local stack's physical name of every resource -> its logical id."""
    return {f"photopipe-local-{_kebab(lid)}": lid for lid in translated_template()["Resources"]}


@contextmanager
def recording(monkeypatch: pytest.MonkeyPatch, *, besides: tuple[Any, ...] = ()) -> Iterator[list[Call]]:
    """Every AWS call made meanwhile, except through the clients in `besides` (the test's own)."""
    calls: list[Call] = []
    original = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]
    ignored = {id(c) for c in besides}

    def record(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        if id(self) not in ignored:
            calls.append((self.meta.service_model.service_name, operation_name, dict(api_params)))
        return original(self, operation_name, api_params)

    with monkeypatch.context() as mp:
        mp.setattr(botocore.client.BaseClient, "_make_api_call", record)
        yield calls


def _iam(call: Call, stack: Stack, names: dict[str, str]) -> list[tuple[str, str]]:
    """What IAM checks for one call, rendered as the table renders grants."""
    service, op, params = call

    def lid(name: str) -> str:
        return "MediaBucket" if name == stack.bucket else names[name]

    if service == "dynamodb":
        if op in {"BatchGetItem", "BatchWriteItem"}:
            return [(f"dynamodb:{op}", _table(lid(t))) for t in params["RequestItems"]]
        if op == "TransactWriteItems":
            kinds = {
                "Put": "PutItem",
                "Update": "UpdateItem",
                "Delete": "DeleteItem",
                "ConditionCheck": "ConditionCheckItem",
            }
            return [
                (f"dynamodb:{kinds[kind]}", _table(lid(body["TableName"])))
                for item in params["TransactItems"]
                for kind, body in item.items()
            ]
        return [(f"dynamodb:{op}", _table(lid(params["TableName"]), params.get("IndexName")))]
    if service == "s3":
        key = params.get("Key", "")
        if op == "ListObjectsV2":
            prefix = params.get("Prefix", "")
            return [("s3:ListBucket", BUCKET), ("s3:prefix", prefix)]
        if op == "DeleteObjects":
            return [
                ("s3:DeleteObject", _objects(o["Key"].split("/")[0])) for o in params["Delete"]["Objects"]
            ]
        action = {
            "GetObject": "s3:GetObject",
            "HeadObject": "s3:GetObject",
            "PutObject": "s3:PutObject",
            "CreateMultipartUpload": "s3:PutObject",
            "UploadPart": "s3:PutObject",
            "CompleteMultipartUpload": "s3:PutObject",
            "AbortMultipartUpload": "s3:AbortMultipartUpload",
        }[op]
        return [(action, _objects(key.split("/")[0]))]
    if service == "sqs":
        name = params["QueueUrl"].rsplit("/", 1)[-1]
        assert op == "SendMessage", f"{op}: only the pollers (SAM's managed policy) receive and delete"
        return [("sqs:SendMessage*", _queue(lid(name)))]
    if service == "secretsmanager":
        secret = {stack.env["JWT_SECRET_ID"]: "JwtSecret", stack.env["FLEET_SECRET_ID"]: "FleetSecret"}
        return [("secretsmanager:GetSecretValue", f"${{{secret[params['SecretId']]}}}")]
    if service == "ssm":
        assert params["Name"] == stack.env["GPU_FLEET_PARAMETER"]
        return [
            (
                f"ssm:{op}",
                "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/photopipe/gpu-fleet/"
                "${GpuJobsQueue.QueueName}",
            )
        ]
    raise AssertionError(f"a call the table does not know: {service}.{op}")


def _ungranted(function_id: str, calls: list[Call], stack: Stack, names: dict[str, str]) -> list[str]:
    assert calls, "the scenario made no AWS call: it tests nothing"
    problems = []
    for call in calls:
        for action, resource in _iam(call, stack, names):
            if action == "s3:prefix":
                if not any(fnmatch(resource, p) for p in LISTED_PREFIXES.get(function_id, set())):
                    problems.append(f"lists {resource!r}, outside its s3:prefix grant")
            elif (action, resource) not in EXPECTED[function_id]:
                problems.append(f"{call[0]}.{call[1]} needs {action} on {resource}")
    return problems


# ------------------------------------------------------------------ the functions at work


def test_ingest(
    stack: Stack, ingest_handler: Any, logical_ids: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = f"originals/u1/{uuid.uuid4().hex}/photo.jpg"
    image_id = stack.seed_image(key)
    etag = stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=jpeg_bytes((800, 600)))["ETag"].strip('"')
    event = load_event("ingest-upload.json")
    body = json.loads(event["Records"][0]["body"])
    body["Records"][0]["s3"]["object"].update(key=key, eTag=etag, size=1)
    event["Records"][0]["body"] = json.dumps(body)

    with recording(monkeypatch) as calls:
        assert ingest_handler(event, FakeContext()) == {"batchItemFailures": []}
        assert ingest_handler(event, FakeContext()) == {"batchItemFailures": []}  # a duplicate delivery

    assert stack.image(image_id)["state"] == "processed"
    assert _ungranted("IngestFunction", calls, stack, logical_ids) == []


def test_classify_from_the_model_and_from_the_cache(
    stack: Stack, ingest_handler: Any, logical_ids: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    images = []
    for n in range(2):  # the same bytes twice: a model call, then an exact-cache hit
        key = f"originals/u{n}/{uuid.uuid4().hex}/photo.jpg"
        images.append(stack.seed_image(key))
        etag = stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=jpeg_bytes((640, 480)))["ETag"].strip(
            '"'
        )
        event = load_event("ingest-upload.json")
        body = json.loads(event["Records"][0]["body"])
        body["Records"][0]["s3"]["object"].update(key=key, eTag=etag, size=1)
        event["Records"][0]["body"] = json.dumps(body)
        assert ingest_handler(event, FakeContext()) == {"batchItemFailures": []}
    handler = load_handler("classify").handler
    with FakeDashScope(api_key="sk-test-0123456789abcdef") as fake:
        monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-0123456789abcdef")
        monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", fake.base_url)
        wiring.reset()
        record = load_event("classify-image.json")["Records"][0]
        with recording(monkeypatch) as calls:
            for image_id in images:
                event = {"Records": [{**record, "body": json.dumps({"image_id": image_id})}]}
                assert handler(event, FakeContext()) == {"batchItemFailures": []}

    assert [stack.image(i)["classification"]["source"] for i in images] == ["llm", "exact_cache"]
    assert _ungranted("ClassifyFunction", calls, stack, logical_ids) == []


def test_exports(
    stack: Stack, api: ApiClient, logical_ids: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.enhance_support import fleet

    fleet(stack).register("gpu-1", provider="CUDAExecutionProvider", max_batch=8)
    token, user_id = register_user(api, "ada")
    image_id, _ = processed_image(stack, user_id)
    status, batch = api.call("POST", "/api/v1/enhance/batch", body={"image_ids": [image_id]}, token=token)
    assert status == 202
    make_worker(stack).poll_once()
    event = load_event("exports-batch.json")
    event["Records"][0]["body"] = json.dumps({"user_id": user_id, "batch_id": batch["batch_id"]})

    with recording(monkeypatch) as calls:
        assert load_handler("exports").handler(event, FakeContext()) == {"batchItemFailures": []}
        assert load_handler("exports").handler(event, FakeContext()) == {"batchItemFailures": []}  # exists

    assert stack.keys(f"exports/{user_id}/") == [f"exports/{user_id}/{batch['batch_id']}.zip"]
    assert _ungranted("ExportsFunction", calls, stack, logical_ids) == []


def test_dead_letters(stack: Stack, logical_ids: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from photopipe.adapters.dynamo import to_item
    from photopipe.models import Job, JobState, utcnow_iso

    image_id = stack.seed_image("originals/u1/img/p.jpg", ImageState.PROCESSING)
    classify_id = stack.seed_image("originals/u1/img2/p.jpg", ImageState.PROCESSED)
    now = utcnow_iso()
    job = Job(
        job_id="j1",
        image_id="i",
        user_id="u1",
        state=JobState.RUNNING,
        source_key="k",
        batch_id="b1",
        created_at=now,
        updated_at=now,
    )
    stack.dynamodb.Table(stack.env["JOBS_TABLE"]).put_item(Item=to_item(job.item()))
    notification = json.loads(load_event("ingest-upload.json")["Records"][0]["body"])
    notification["Records"][0]["s3"]["bucket"]["name"] = stack.bucket
    notification["Records"][0]["s3"]["object"]["key"] = "originals/u1/img/p.jpg"
    bodies = {
        "INGEST_DEAD_LETTER_QUEUE_ARN": json.dumps(notification),
        "CLASSIFY_DEAD_LETTER_QUEUE_ARN": json.dumps({"image_id": classify_id}),
        "GPU_JOBS_DEAD_LETTER_QUEUE_ARN": json.dumps({"job_id": "j1", "user_id": "u1"}),
        "EXPORTS_DEAD_LETTER_QUEUE_ARN": json.dumps({"user_id": "u1", "batch_id": "b1"}),
    }
    record = load_event("dead-letter-ingest.json")["Records"][0]
    event = {
        "Records": [
            {**record, "messageId": f"m{n}", "body": body, "eventSourceARN": stack.env[arn]}
            for n, (arn, body) in enumerate(bodies.items())
        ]
    }

    with recording(monkeypatch) as calls:
        answer = load_handler("dead_letters").handler(event, FakeContext())

    assert len(answer["batchItemFailures"]) == 4
    assert stack.image(image_id)["state"] == "failed"
    assert stack.image(classify_id)["state"] == "classification_failed"
    assert _ungranted("DeadLetterFunction", calls, stack, logical_ids) == []


def test_the_api(
    stack: Stack, api: ApiClient, logical_ids: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = {"secret": fleet_secret(stack)}
    ssm = stack.new_client("ssm")
    mine = (stack.s3, stack.sqs, stack.dynamodb.meta.client, ssm)
    with recording(monkeypatch, besides=mine) as calls:
        # accounts
        token, user_id = register_user(api, "ada")
        login = {"username": "ada", "password": "correct-horse-battery"}
        assert api.call("POST", "/api/v1/auth/login", body=login)[0] == 200
        assert api.call("GET", "/api/v1/profile", token=token)[0] == 200
        # uploads, photos, deletes
        upload_request = {"filename": "a.jpg", "content_type": "image/jpeg", "size": 10}
        status, upload = api.call("POST", "/api/v1/uploads", token=token, body=upload_request)
        assert status == 201
        stack.s3.put_object(Bucket=stack.bucket, Key=upload["key"], Body=b"x")
        assert api.call("GET", "/api/v1/images", token=token)[0] == 200
        assert api.call("GET", f"/api/v1/images/{upload['image_id']}", token=token)[0] == 200
        assert api.call("GET", f"/api/v1/images/{upload['image_id']}/classification", token=token)[0] == 200
        assert api.call("DELETE", f"/api/v1/images/{upload['image_id']}", token=token)[0] == 204
        image_id, _ = processed_image(stack, user_id)
        other, _ = processed_image(stack, user_id)
        assert (
            api.call("POST", "/api/v1/images/batch-delete", token=token, body={"image_ids": [other]})[0]
            == 200
        )
        # classification cache and statistics
        check = {"sha256": "0" * 64, "phash": "0" * 16}
        assert api.call("POST", "/api/v1/classify/check-cache", token=token, body=check)[0] == 200
        for path in ("/api/v1/stats/today", "/api/v1/stats/cache", "/api/v1/stats/categories"):
            assert api.call("GET", path, token=token)[0] == 200
        # the fleet; enhancement refused with no fleet, then queued for one that scales from zero
        assert api.call("GET", "/api/v1/health")[0] == 200
        assert api.call("POST", "/api/v1/enhance", body={"image_id": image_id}, token=token)[0] == 503
        ssm.put_parameter(Name=stack.env["GPU_FLEET_PARAMETER"], Type="String", Value="{}")
        wiring.reset()
        status, job = api.call("POST", "/api/v1/enhance", body={"image_id": image_id}, token=token)
        assert status == 202
        assert api.call("GET", f"/api/v1/enhance/{job['job_id']}", token=token)[0] == 200
        assert api.call("DELETE", f"/api/v1/enhance/{job['job_id']}", token=token)[0] == 200  # cancel
        assert api.call("DELETE", f"/api/v1/enhance/{job['job_id']}", token=token)[0] == 204  # delete
        status, batch = api.call("POST", "/api/v1/enhance/batch", body={"image_ids": [image_id]}, token=token)
        assert status == 202
        assert api.call("POST", "/webhook/register", body={"worker_id": "w1", **secret})[0] == 200
        assert api.call("GET", "/webhook/servers", body=None)[0] == 401  # no secret: refused before any call
    make_worker(
        stack
    ).poll_once()  # the GPU worker's calls are its task role's (tests/unit/test_gpu_stack.py)
    with recording(monkeypatch, besides=mine) as more:
        path = f"/api/v1/enhance/batch/{batch['batch_id']}"
        status, body = api.call("GET", path, token=token)
        assert (status, body["done"]) == (200, True)
        status, body = api.call("GET", f"{path}/download", token=token)
        assert status == 202  # the ZIP is asked for
        assert api.call("POST", "/webhook/unregister", body={"worker_id": "w1", **secret})[0] == 200

    assert {c[0] for c in calls + more} == {"dynamodb", "s3", "sqs", "secretsmanager", "ssm"}
    assert _ungranted("ApiFunction", calls + more, stack, logical_ids) == []
