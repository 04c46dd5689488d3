"""Scale from zero: with the GPU worker stack deployed (its SSM parameter present) a job is queued while no
worker is up - the queue's backlog is what starts one; with no fleet at all the API says so with a 503."""

from __future__ import annotations

import json

import pytest

from photopipe import wiring
from tests.integration.conftest import ApiClient, Stack
from tests.integration.enhance_support import processed_image, register_user, visible_messages


def _deploy_gpu_stack(stack: Stack) -> None:
    """What infra/gpu-worker/stack.yaml's FleetParameter writes."""
    stack.new_client("ssm").put_parameter(
        Name=stack.env["GPU_FLEET_PARAMETER"],
        Type="String",
        Value=json.dumps(
            {"cluster": "photopipe-gpu-dev", "service": "svc", "max_workers": 4, "scales_from_zero": True}
        ),
    )


def test_the_parameter_is_the_one_the_gpu_stack_writes(stack: Stack) -> None:
    queue_name = stack.env["GPU_JOBS_QUEUE_URL"].rsplit("/", 1)[-1]

    assert stack.env["GPU_FLEET_PARAMETER"] == f"/photopipe/gpu-fleet/{queue_name}"


def test_with_the_gpu_stack_deployed_a_job_is_queued_while_no_worker_is_up(
    stack: Stack, api: ApiClient
) -> None:
    # GIVEN the GPU stack deployed, scaled to zero (no worker has ever reported)
    _deploy_gpu_stack(stack)
    token, user_id = register_user(api, "ada")
    image_id, _ = processed_image(stack, user_id)

    # WHEN a job is submitted
    status, body = api.call("POST", "/api/v1/enhance", body={"image_id": image_id}, token=token)

    # THEN it is accepted and waits in the queue, where its backlog starts a worker
    assert status == 202, body
    assert body["state"] == "queued"
    assert visible_messages(stack, stack.env["GPU_JOBS_QUEUE_URL"]) == 1


def test_with_no_fleet_at_all_the_answer_is_a_503_saying_so(stack: Stack, api: ApiClient) -> None:
    token, user_id = register_user(api, "ada")
    image_id, _ = processed_image(stack, user_id)

    status, body = api.call("POST", "/api/v1/enhance/batch", body={"image_ids": [image_id]}, token=token)

    assert status == 503
    assert body["error"]["code"] == "enhancement_unavailable"
    assert body["error"]["message"].startswith(
        "no GPU fleet is deployed and no enhancement worker has reported"
    )
    assert "infra/gpu-worker/stack.yaml" in body["error"]["message"]
    assert visible_messages(stack, stack.env["GPU_JOBS_QUEUE_URL"]) == 0


def test_deleting_the_gpu_stack_brings_the_503_back(
    stack: Stack, api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _deploy_gpu_stack(stack)
    token, user_id = register_user(api, "ada")
    image_id, _ = processed_image(stack, user_id)
    assert api.call("POST", "/api/v1/enhance", body={"image_id": image_id}, token=token)[0] == 202

    stack.new_client("ssm").delete_parameter(Name=stack.env["GPU_FLEET_PARAMETER"])
    wiring.reset()  # a new execution environment (a warm one notices within the minute it caches the answer)

    assert api.call("POST", "/api/v1/enhance", body={"image_id": image_id}, token=token)[0] == 503
