"""The presigned POST: S3 enforces its policy and moto does not, so the policy document itself is tested."""

import base64
import json

import boto3
import pytest
from botocore.config import Config

from photopipe.adapters.s3 import MediaStore
from photopipe.usecases.uploads import display_name, key_name, original_key


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> MediaStore:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    # Signing is local: no request is sent.
    s3 = boto3.client("s3", region_name="us-east-1", config=Config(signature_version="s3v4"))
    return MediaStore("media-bucket", client=s3)


def test_policy_is_scoped_to_one_key_one_type_and_a_size_range(store: MediaStore) -> None:
    key = original_key("u1", "i1", key_name("holiday.jpg"))
    post = store.presigned_post(key, content_type="image/jpeg", max_bytes=50 * 1024 * 1024, expires_in=900)

    policy = json.loads(base64.b64decode(post.fields["policy"]))
    conditions = policy["conditions"]
    assert {"bucket": "media-bucket"} in conditions
    assert {"key": "originals/u1/i1/holiday.jpg"} in conditions, "an exact key, not a starts-with prefix"
    assert not any(isinstance(c, list) and c[0] == "starts-with" for c in conditions)
    assert {"Content-Type": "image/jpeg"} in conditions
    assert ["content-length-range", 1, 50 * 1024 * 1024] in conditions
    assert policy["expiration"].endswith("Z")
    assert post.fields["key"] == key
    assert post.fields["Content-Type"] == "image/jpeg"
    assert post.fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    assert "x-amz-signature" in post.fields


@pytest.mark.parametrize(
    ("given", "shown", "in_key"),
    [
        ("holiday.jpg", "holiday.jpg", "holiday.jpg"),
        ("../../etc/passwd", "passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini", "win.ini"),
        ("/absolute/path/photo.png", "photo.png", "photo.png"),
        ("bad\x00name\x1b[31m.jpg", "badname[31m.jpg", "badname_31m.jpg"),
        ("Café del Mar 🌅.heic", "Café del Mar 🌅.heic", "Cafe_del_Mar_.heic"),
        ("...", "upload", "upload"),
        ("", "upload", "upload"),
        ("a" * 300 + ".jpeg", "a" * 195 + ".jpeg", "a" * 120),
    ],
)
def test_file_names_are_sanitised_for_display_and_for_the_key(given: str, shown: str, in_key: str) -> None:
    assert display_name(given) == shown
    assert key_name(given) == in_key
    assert "/" not in key_name(given)
    assert ".." not in key_name(given)
