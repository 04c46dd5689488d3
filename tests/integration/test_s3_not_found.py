"""A deleted object reads as not found even when S3 answers 403 - which it does for a missing key unless the
caller may list the bucket (the GPU worker's list grant is prefix-scoped). moto answers 404 whatever IAM
says, so S3's 403 is written into the GetObject/HeadObject calls through botocore's event hooks."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from photopipe.adapters.s3 import MediaStore
from photopipe.errors import NotFoundError, PhotopipeError
from tests.integration.conftest import Stack


def _denied(store: MediaStore, operation: str) -> None:
    def deny(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, operation)

    store.client.meta.events.register(f"before-call.s3.{operation}", deny)


def test_a_403_for_a_key_that_is_not_listed_is_not_found(stack: Stack) -> None:
    store = MediaStore(stack.bucket)
    stack.s3.put_object(Bucket=stack.bucket, Key="originals/u1/i1/photo.jpg.bak", Body=b"x")  # same prefix
    _denied(store, "GetObject")
    _denied(store, "HeadObject")

    with pytest.raises(NotFoundError) as missing:
        store.open("originals/u1/i1/photo.jpg")
    assert missing.value.code == "missing_object"
    assert store.exists("originals/u1/i1/photo.jpg") is False


def test_a_403_for_a_key_that_exists_stays_an_access_error(stack: Stack) -> None:
    store = MediaStore(stack.bucket)
    stack.s3.put_object(Bucket=stack.bucket, Key="originals/u1/i1/photo.jpg", Body=b"x")
    _denied(store, "GetObject")
    _denied(store, "HeadObject")

    with pytest.raises(PhotopipeError) as denied:
        store.open("originals/u1/i1/photo.jpg")
    assert not isinstance(denied.value, NotFoundError)
    assert "AccessDenied" in denied.value.message
    with pytest.raises(PhotopipeError):
        store.exists("originals/u1/i1/photo.jpg")


def test_a_403_that_cannot_be_checked_stays_an_access_error(stack: Stack) -> None:
    store = MediaStore(stack.bucket)
    _denied(store, "GetObject")
    _denied(store, "ListObjectsV2")

    with pytest.raises(PhotopipeError) as denied:
        store.open("originals/u1/i1/photo.jpg")
    assert not isinstance(denied.value, NotFoundError)
