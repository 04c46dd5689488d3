"""moto fixtures: the resources `template.yaml` declares, created in-process (`mock_aws`) by the same code
the local stack uses, and the functions' environment as the template resolves it."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from boto3.dynamodb.conditions import Key
from moto import mock_aws
from PIL import Image

from photopipe import wiring
from photopipe.models import ImageRecord, ImageState, utcnow_iso
from photopipe_local.resources import AwsClients, create_resources
from photopipe_local.runtime import functions_environment
from photopipe_local.template import Template
from tests.conftest import ROOT, FakeContext, load_event, load_handler


@cache
def _template() -> Template:
    """template.yaml as samtranslator translates it (once: translating takes a noticeable fraction of a second)."""
    return Template(ROOT / "template.yaml", stack_name="photopipe-local", region="us-east-1")


@cache
def _photo(size: tuple[int, int]) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).resize(size)


def jpeg_bytes(size: tuple[int, int], quality: int = 90) -> bytes:
    buf = io.BytesIO()
    _photo(size).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@dataclass
class Stack:
    """Handles on the emulated resources, with helpers that read what a user would see."""

    env: dict[str, str]
    bucket: str
    users_table: str
    images_table: str
    idempotency_table: str
    cache_table: str
    stats_table: str
    classify_queue_url: str
    jwt_secret: str
    s3: Any
    sqs: Any
    dynamodb: Any

    def queued(self, queue_url: str) -> list[dict[str, Any]]:
        """Every message waiting in a queue (received once, then made visible again)."""
        resp = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        return [json.loads(m["Body"]) for m in resp.get("Messages", [])]

    def drain(self, queue_url: str) -> list[dict[str, Any]]:
        """Receive and delete every waiting message."""
        bodies: list[dict[str, Any]] = []
        while True:
            resp = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
            messages = resp.get("Messages", [])
            if not messages:
                return bodies
            for m in messages:
                bodies.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])

    def new_client(self, service: str) -> Any:
        return boto3.session.Session(region_name="us-east-1").client(service)  # type: ignore[call-overload]

    def image(self, image_id: str) -> dict[str, Any]:
        item = self.dynamodb.Table(self.images_table).get_item(Key={"image_id": image_id}).get("Item")
        assert item is not None, f"no image record {image_id}"
        return {k: int(v) if type(v).__name__ == "Decimal" else v for k, v in item.items()}

    def table_items(self) -> list[dict[str, Any]]:
        return list(self.dynamodb.Table(self.images_table).scan()["Items"])

    def keys(self, prefix: str) -> list[str]:
        resp = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for o in resp.get("Contents", [])]

    def read(self, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def object_versions(self, prefix: str) -> dict[str, tuple[str, Any]]:
        resp = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return {o["Key"]: (o["ETag"], o["LastModified"]) for o in resp.get("Contents", [])}

    def seed_image(self, original_key: str, state: ImageState = ImageState.PENDING_UPLOAD) -> str:
        """An image record for `originals/{user}/{image}/{name}`: by default the one `POST /uploads` makes."""
        _, user_id, image_id, name = original_key.split("/")
        now = utcnow_iso()
        record = ImageRecord(
            image_id=image_id,
            user_id=user_id,
            state=state,
            filename=name,
            original_key=original_key,
            content_type="image/jpeg",
            created_at=now,
            updated_at=now,
        )
        self.dynamodb.Table(self.images_table).put_item(
            Item=record.model_dump(mode="json", exclude_none=True)
        )
        return image_id

    def owner_images(self, user_id: str) -> list[dict[str, Any]]:
        table = self.dynamodb.Table(self.images_table)
        return list(
            table.query(IndexName="by-owner", KeyConditionExpression=Key("user_id").eq(user_id))["Items"]
        )


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        template = _template()
        clients = AwsClients.for_endpoint(None, "us-east-1")
        physical = create_resources(template, clients)
        env = functions_environment(template.functions(physical))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
        wiring.reset()
        parameters.clear_caches()
        secret = clients.secretsmanager.get_secret_value(SecretId=env["JWT_SECRET_ID"])["SecretString"]
        yield Stack(
            env=env,
            bucket=env["MEDIA_BUCKET"],
            users_table=env["USERS_TABLE"],
            images_table=env["IMAGES_TABLE"],
            idempotency_table=env["IDEMPOTENCY_TABLE"],
            cache_table=env["CLASSIFICATION_CACHE_TABLE"],
            stats_table=env["STATS_TABLE"],
            classify_queue_url=env["CLASSIFY_QUEUE_URL"],
            jwt_secret=secret,
            s3=clients.s3,
            sqs=clients.sqs,
            dynamodb=boto3.resource("dynamodb"),
        )
        wiring.reset()
        parameters.clear_caches()


class ApiClient:
    """Calls the API function the way API Gateway would, with events built from `events/`."""

    def __init__(self, handler: Any) -> None:
        self._handler = handler

    def invoke_file(self, name: str) -> tuple[int, Any]:
        return self._send(load_event(name))

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        token: str | None = None,
        query: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        event = load_event("api-health.json")
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        event["requestContext"]["http"]["method"] = method
        event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {path}"
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in (query or {}).items())
        if query:
            event["queryStringParameters"] = query
        if token:
            event["headers"]["authorization"] = f"Bearer {token}"
        if body is not None:
            event["body"] = json.dumps(body)
        return self._send(event)

    def call_raw(
        self,
        method: str,
        path: str,
        *,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        source_ip: str | None = None,
    ) -> dict[str, Any]:
        """Send exactly these body bytes (base64-encoded, as API Gateway passes a binary body) and
        headers; returns the whole proxy response (status, headers, body)."""
        event = load_event("api-health.json")
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        event["requestContext"]["http"]["method"] = method
        event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {path}"
        event["headers"].update({k.lower(): v for k, v in (headers or {}).items()})
        if source_ip:
            event["requestContext"]["http"]["sourceIp"] = source_ip
        if body is not None:
            raw = body.encode() if isinstance(body, str) else body
            event["body"] = base64.b64encode(raw).decode()
            event["isBase64Encoded"] = True
        resp: dict[str, Any] = self._handler(event, FakeContext("photopipe-api"))
        return resp

    def _send(self, event: dict[str, Any]) -> tuple[int, Any]:
        resp = self._handler(event, FakeContext("photopipe-api"))
        text = resp.get("body") or ""
        return resp["statusCode"], json.loads(text) if text else None


@pytest.fixture
def api(stack: Stack) -> ApiClient:
    return ApiClient(load_handler("api").handler)


@pytest.fixture
def ingest_handler(stack: Stack) -> Any:
    return load_handler("ingest").handler
