"""Every S3 link and upload form is signed with Signature Version 4.

botocore presigns S3 with SigV2 unless the client says otherwise, S3 refuses SigV2 on buckets created after
June 2020, and moto accepts both: so the signature is checked here, on what the product's own S3 client
produces (signing is local, nothing is sent), and the policy document S3 would enforce is read back."""

from __future__ import annotations

import ast
import base64
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from photopipe.adapters.s3 import MediaStore
from tests.conftest import ROOT

PACKAGE = ROOT / "layers" / "photopipe" / "photopipe"


@pytest.fixture(params=["us-east-1", "eu-central-1"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> MediaStore:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", request.param)
    return MediaStore("media-bucket")  # the client the functions and the GPU worker build


def test_presigned_post_is_sigv4_and_its_policy_names_the_signature(store: MediaStore) -> None:
    post = store.presigned_post(
        "originals/u1/i1/a.jpg", content_type="image/jpeg", max_bytes=1024 * 1024, expires_in=900
    )

    fields = post.fields
    assert fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    assert fields["x-amz-credential"].startswith("testing/")
    assert fields["x-amz-credential"].endswith("/s3/aws4_request")
    assert len(fields["x-amz-date"]) == len("20250101T000000Z")
    assert len(fields["x-amz-signature"]) == 64
    assert not {"AWSAccessKeyId", "signature"} & set(fields), "SigV2 fields: S3 would refuse the upload"
    conditions = json.loads(base64.b64decode(fields["policy"]))["conditions"]
    assert {"x-amz-algorithm": "AWS4-HMAC-SHA256"} in conditions
    assert {"x-amz-credential": fields["x-amz-credential"]} in conditions
    assert {"x-amz-date": fields["x-amz-date"]} in conditions
    assert {"key": "originals/u1/i1/a.jpg"} in conditions


def test_presigned_get_is_sigv4(store: MediaStore) -> None:
    url = store.presigned_get("derived/u1/i1/thumb.webp", expires_in=300, download_name="thumb.webp")

    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["300"]
    assert query["X-Amz-SignedHeaders"] == ["host"]
    assert len(query["X-Amz-Signature"][0]) == 64
    assert not {"AWSAccessKeyId", "Signature", "Expires"} & set(query), (
        "SigV2 query: S3 would refuse the link"
    )
    assert query["response-content-disposition"] == ['inline; filename="thumb.webp"']


def test_a_client_without_the_project_config_would_sign_with_sigv2(monkeypatch: pytest.MonkeyPatch) -> None:
    # The reason for the config: the default botocore client still signs SigV2 (what the checks above catch).
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    plain = MediaStore("media-bucket", client=boto3.client("s3", region_name="us-east-1"))

    fields = plain.presigned_post(
        "originals/u1/i1/a.jpg", content_type="image/jpeg", max_bytes=1, expires_in=60
    )
    url = plain.presigned_get("originals/u1/i1/a.jpg", expires_in=60)

    assert "x-amz-algorithm" not in fields.fields
    assert "X-Amz-Algorithm" not in parse_qs(urlsplit(url).query)


def _s3_clients_built_by_hand(path: Path) -> list[int]:
    """Lines where `path` makes an S3 client or resource other than through `photopipe.adapters.aws.client`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    ours = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "photopipe.adapters.aws"
        for alias in node.names
        if alias.name == "client"
    }
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
            continue
        if node.args[0].value != "s3":
            continue
        func = node.func
        by_hand = isinstance(func, ast.Attribute) and func.attr in {"client", "resource"}
        if by_hand or (isinstance(func, ast.Name) and func.id not in ours):
            lines.append(node.lineno)
    return lines


def test_every_s3_client_comes_from_the_one_configuration() -> None:
    sources = [p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "adapters" / "aws.py"]
    sources += sorted((ROOT / "infra" / "gpu-worker").glob("*.py"))
    assert len(sources) > 40

    found = {str(p.relative_to(ROOT)): lines for p in sources if (lines := _s3_clients_built_by_hand(p))}

    assert found == {}


def test_the_client_check_sees_a_hand_built_client(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import boto3\nfrom photopipe.adapters.aws import client as make\n"
        "a = make('s3')\nb = boto3.client('s3')\nc = boto3.session.Session().resource('s3')\n"
    )

    assert _s3_clients_built_by_hand(sample) == [4, 5]
