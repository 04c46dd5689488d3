"""Two local stacks, one after the other, in one process (as `benchmarks/e2e_local.py` runs each size): the
second serves from its own moto, not through clients the first one's handlers built."""

from __future__ import annotations

import uuid

import pytest
import requests

from photopipe_local import LocalStack
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def register(api_url: str) -> requests.Response:
    name = f"u{uuid.uuid4().hex[:8]}"
    body = {"username": name, "email": f"{name}@example.com", "password": "a-long-enough-password"}
    return requests.post(f"{api_url}/api/v1/auth/register", json=body, timeout=30)


def test_a_second_stack_in_the_same_process_serves_from_its_own_moto() -> None:
    for _ in range(2):
        with LocalStack(
            ROOT / "template.yaml", port=0, stack_name="photopipe-twice", write_state=False
        ) as stack:
            assert stack.api_url is not None
            registered = register(stack.api_url)
            assert registered.status_code == 201, registered.text
            assert (
                requests.get(
                    f"{stack.api_url}/api/v1/profile",
                    headers={"authorization": f"Bearer {registered.json()['token']}"},
                    timeout=30,
                ).status_code
                == 200
            )
