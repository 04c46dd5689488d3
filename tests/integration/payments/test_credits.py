"""Credits against moto, through the API handler where a user would go: the free allowance (once), one
credit reserved per photo (a batch all or nothing), 402 with too few, no overdraft under concurrent
submits, and the refund of a failed or cancelled job - exactly once."""

from __future__ import annotations

import dataclasses
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from photopipe import wiring
from photopipe.adapters.jobs import JobsRepository
from photopipe.errors import PaymentRequiredError
from photopipe.models import EnhanceParams, JobState
from photopipe.settings import WorkerSettings
from photopipe.usecases.credits import Credits
from tests.fakes.enhance import FakeEnhancer, InvertingRestorer
from tests.integration.conftest import ApiClient, Stack
from tests.integration.enhance_support import job_item, register_user, visible_messages
from tests.integration.payments.conftest import balance, credits_of, photos


def _ledger_adds_up(api: ApiClient, token: str) -> None:
    """The entries of the ledger always explain the balance."""
    account = credits_of(api, token)
    assert sum(e["amount"] for e in account["entries"]) == account["balance"]


def _credits() -> Credits:
    return wiring.api_services().credits


# ------------------------------------------------------------------ the free allowance
def test_a_new_user_gets_the_free_allowance_once(stack: Stack, api: ApiClient, ada: tuple[str, str]) -> None:
    token, _user_id = ada

    first = credits_of(api, token)
    again = credits_of(api, token)

    assert first["balance"] == again["balance"] == 10
    assert again["entries"] == first["entries"]
    (grant,) = again["entries"]
    assert grant["kind"] == "grant"
    assert grant["amount"] == 10
    assert grant["entry_id"] == "grant:welcome"
    assert "free" in grant["reason"]
    assert again["packages_url"] == "/api/v1/payments/packages"


def test_the_allowance_is_granted_once_even_when_asked_for_at_once(
    stack: Stack, api: ApiClient, one_request_at_a_time: None
) -> None:
    # GIVEN a user nobody has looked at yet, and 12 requests opening the account at the same moment
    token, user_id = register_user(api, "bob")
    credits = _credits()
    start = threading.Barrier(12)

    def open_account(_: int) -> int:
        start.wait()
        return credits.open(user_id).balance

    with ThreadPoolExecutor(12) as pool:
        balances = list(pool.map(open_account, range(12)))

    # THEN every one sees the same balance, and the ledger holds one grant
    assert balances == [10] * 12
    account = credits_of(api, token)
    assert account["balance"] == 10
    assert [e["kind"] for e in account["entries"]] == ["grant"]


def test_the_allowance_comes_from_the_configuration(
    stack: Stack, api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert stack.env["PHOTOPIPE_FREE_CREDITS"] == "10"  # the FreeCredits parameter's default
    monkeypatch.setenv("PHOTOPIPE_FREE_CREDITS", "3")
    wiring.reset()
    token, _ = register_user(api, "cyd")

    assert balance(api, token) == 3


# ------------------------------------------------------------------ reserving
def test_enhancing_reserves_one_credit_per_photo(
    stack: Stack, api: ApiClient, ada: tuple[str, str], worker_up: None
) -> None:
    token, user_id = ada
    one, *three = photos(stack, user_id, 4)

    status, job = api.call("POST", "/api/v1/enhance", body={"image_id": one}, token=token)
    assert status == 202, job
    assert balance(api, token) == 9
    status, batch = api.call("POST", "/api/v1/enhance/batch", body={"image_ids": three}, token=token)
    assert status == 202, batch

    account = credits_of(api, token)
    assert account["balance"] == 6
    reserves = [e for e in account["entries"] if e["kind"] == "reserve"]
    assert sorted(e["job_id"] for e in reserves) == sorted(
        [job["job_id"], *(j["job_id"] for j in batch["jobs"])]
    )
    assert all(e["amount"] == -1 and e["entry_id"] == f"reserve:{e['job_id']}" for e in reserves)
    _ledger_adds_up(api, token)


def test_too_few_credits_answer_402_naming_how_to_buy_and_reserve_nothing(
    stack: Stack, api: ApiClient, ada: tuple[str, str], worker_up: None
) -> None:
    # GIVEN 10 credits and a batch of 11 photos
    token, user_id = ada
    image_ids = photos(stack, user_id, 11)

    status, body = api.call("POST", "/api/v1/enhance/batch", body={"image_ids": image_ids}, token=token)

    # THEN nothing is queued or charged, and the answer says how to get more
    assert status == 402
    assert body["error"]["code"] == "insufficient_credits"
    message = body["error"]["message"]
    assert "11 credit(s)" in message
    assert "you have 10" in message
    assert "/api/v1/payments/orders" in message
    assert "photopipe buy" in message
    assert balance(api, token) == 10
    assert visible_messages(stack, stack.env["GPU_JOBS_QUEUE_URL"]) == 0
    assert stack.dynamodb.Table(stack.env["JOBS_TABLE"]).scan()["Items"] == []
    # the 10 it can pay for go through, and then a single one does not
    status, _ = api.call("POST", "/api/v1/enhance/batch", body={"image_ids": image_ids[:10]}, token=token)
    assert status == 202
    status, body = api.call("POST", "/api/v1/enhance", body={"image_id": image_ids[10]}, token=token)
    assert status == 402
    assert balance(api, token) == 0


def test_concurrent_submits_never_overdraw_the_balance(
    stack: Stack, api: ApiClient, ada: tuple[str, str], worker_up: None, one_request_at_a_time: None
) -> None:
    # GIVEN 10 credits and 30 submissions racing for them
    token, user_id = ada
    image_ids = photos(stack, user_id, 30)
    jobs = wiring.api_services().enhance_jobs
    start = threading.Barrier(30)

    def submit(image_id: str) -> str:
        start.wait()
        try:
            return jobs.submit(user_id, image_id, EnhanceParams()).job_id
        except PaymentRequiredError:
            return "refused"

    with ThreadPoolExecutor(30) as pool:
        outcomes = list(pool.map(submit, image_ids))

    # THEN exactly 10 are accepted, the balance is 0 (never below), and each accepted job is paid for
    accepted = [o for o in outcomes if o != "refused"]
    assert len(accepted) == 10
    account = credits_of(api, token)
    assert account["balance"] == 0
    assert sorted(e["job_id"] for e in account["entries"] if e["kind"] == "reserve") == sorted(accepted)
    assert visible_messages(stack, stack.env["GPU_JOBS_QUEUE_URL"]) == 10
    _ledger_adds_up(api, token)


# ------------------------------------------------------------------ refunds
def _failing_worker(stack: Stack, *, last_attempt: bool) -> Any:
    """The GPU worker as production wires it (refunds included), on a photo that always fails."""
    settings = WorkerSettings.from_env(
        {
            **stack.env,
            "PHOTOPIPE_MODEL_DIR": "/unused",
            "PHOTOPIPE_WORKER_ID": "failing",
            "PHOTOPIPE_POLL_WAIT_S": "0",
            "GPU_JOBS_MAX_RECEIVE_COUNT": "1" if last_attempt else "3",
        }
    )
    enhancer = FakeEnhancer()
    enhancer.fail_on = lambda _data: True
    worker = wiring.gpu_worker(settings, restorer=InvertingRestorer(), enhancer=enhancer)
    worker.config = dataclasses.replace(worker.config, retry_delay_s=0)  # retry at once, not in 10 s
    return worker


def test_a_job_that_fails_for_good_is_refunded_once(
    stack: Stack, api: ApiClient, ada: tuple[str, str], worker_up: None
) -> None:
    token, user_id = ada
    (image_id,) = photos(stack, user_id, 1)
    _, job = api.call("POST", "/api/v1/enhance", body={"image_id": image_id}, token=token)
    assert balance(api, token) == 9

    # WHEN an attempt that is not the last fails, nothing is refunded yet (it will be retried)
    _failing_worker(stack, last_attempt=False).poll_once()
    assert job_item(stack, job["job_id"])["state"] == "queued"
    assert balance(api, token) == 9

    # WHEN its last attempt fails
    _failing_worker(stack, last_attempt=True).poll_once()

    # THEN the job is failed and its credit is back, once
    assert job_item(stack, job["job_id"])["state"] == "failed"
    account = credits_of(api, token)
    assert account["balance"] == 10
    (refund,) = [e for e in account["entries"] if e["kind"] == "refund"]
    assert refund["job_id"] == job["job_id"]
    assert refund["amount"] == 1
    assert refund["entry_id"] == f"refund:{job['job_id']}"
    # a dead-letter consumer refunding it again, and a user deleting it, give nothing more
    assert _credits().refund(job["job_id"], "stuck job marked failed").result == "already_refunded"
    assert api.call("DELETE", f"/api/v1/enhance/{job['job_id']}", token=token)[0] == 204
    assert balance(api, token) == 10
    _ledger_adds_up(api, token)


def test_a_cancelled_job_is_refunded_once(
    stack: Stack, api: ApiClient, ada: tuple[str, str], worker_up: None
) -> None:
    token, user_id = ada
    (image_id,) = photos(stack, user_id, 1)
    _, job = api.call("POST", "/api/v1/enhance", body={"image_id": image_id}, token=token)

    status, cancelled = api.call("DELETE", f"/api/v1/enhance/{job['job_id']}", token=token)
    assert status == 200
    assert cancelled["state"] == "cancelled"
    assert balance(api, token) == 10
    # deleting the cancelled job afterwards does not refund it a second time
    assert api.call("DELETE", f"/api/v1/enhance/{job['job_id']}", token=token)[0] == 204

    account = credits_of(api, token)
    assert account["balance"] == 10
    assert [e["kind"] for e in account["entries"]].count("refund") == 1


def test_a_stuck_job_marked_failed_elsewhere_is_refunded_once_however_often_asked(
    stack: Stack, api: ApiClient, ada: tuple[str, str], worker_up: None, one_request_at_a_time: None
) -> None:
    # GIVEN a job that a dead-letter consumer marks failed (its own conditional write, no refund yet)
    token, user_id = ada
    (image_id,) = photos(stack, user_id, 1)
    _, job = api.call("POST", "/api/v1/enhance", body={"image_id": image_id}, token=token)
    failed = JobsRepository(stack.env["JOBS_TABLE"]).update(
        job["job_id"], from_states=(JobState.QUEUED, JobState.RUNNING), to_state=JobState.FAILED
    )
    assert failed is not None
    assert balance(api, token) == 9
    credits = _credits()
    start = threading.Barrier(10)

    # WHEN it calls refund(job_id, reason) ten times at once (redeliveries, retries)
    def refund(_: int) -> str:
        start.wait()
        return credits.refund(job["job_id"], "stuck job moved to the dead-letter queue").result

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(refund, range(10)))

    # THEN one refunds and the others find it refunded
    assert sorted(results) == ["already_refunded"] * 9 + ["refunded"]
    assert balance(api, token) == 10
    _ledger_adds_up(api, token)


def test_refund_gives_nothing_for_a_job_that_did_not_fail(
    stack: Stack, api: ApiClient, ada: tuple[str, str], worker_up: None
) -> None:
    token, user_id = ada
    (image_id,) = photos(stack, user_id, 1)
    _, job = api.call("POST", "/api/v1/enhance", body={"image_id": image_id}, token=token)

    assert _credits().refund(job["job_id"], "not really").result == "not_refundable"  # still queued
    assert _credits().refund("no-such-job", "typo").result == "no_job"
    assert balance(api, token) == 9


def test_the_ledger_pages_newest_first(
    stack: Stack, api: ApiClient, ada: tuple[str, str], worker_up: None
) -> None:
    token, user_id = ada
    image_ids = photos(stack, user_id, 3)
    for image_id in image_ids:
        assert api.call("POST", "/api/v1/enhance", body={"image_id": image_id}, token=token)[0] == 202

    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, page = api.call("GET", "/api/v1/credits", token=token, query=query)
        assert status == 200
        assert len(page["entries"]) <= 2
        seen.extend(page["entries"])
        cursor = page["next_cursor"]
        if not cursor:
            break

    assert [e["kind"] for e in seen] == ["reserve", "reserve", "reserve", "grant"]
    assert [e["at"] for e in seen] == sorted((e["at"] for e in seen), reverse=True)
    status, body = api.call("GET", "/api/v1/credits", token=token, query={"cursor": "not-a-cursor"})
    assert status == 400
    assert body["error"]["code"] == "invalid_cursor"


def test_a_job_the_dead_letter_recorder_marks_failed_is_refunded_once(
    stack: Stack, api: ApiClient, ada: tuple[str, str], worker_up: None
) -> None:
    from tests.conftest import load_handler
    from tests.integration.test_dead_letters import _queue, deliver

    # GIVEN a job whose GPU worker was killed on its last attempt (left `running`, lease long gone)
    token, user_id = ada
    (image_id,) = photos(stack, user_id, 1)
    _, job = api.call("POST", "/api/v1/enhance", body={"image_id": image_id}, token=token)
    JobsRepository(stack.env["JOBS_TABLE"]).update(
        job["job_id"],
        from_states=(JobState.QUEUED,),
        to_state=JobState.RUNNING,
        set_fields={"lease_expires_at": 1},
    )
    assert balance(api, token) == 9
    dlq_url, dlq_arn = _queue(stack, "GPU_JOBS_DEAD_LETTER_QUEUE_ARN")
    body = json.dumps({"job_id": job["job_id"], "user_id": user_id})

    # WHEN its message reaches the gpu-jobs dead-letter queue
    recorder = load_handler("dead_letters").handler
    stack.sqs.send_message(QueueUrl=dlq_url, MessageBody=body)
    deliver(stack, recorder, dlq_url, dlq_arn)

    # THEN the job is failed and its credit is back
    assert job_item(stack, job["job_id"])["state"] == "failed"
    assert balance(api, token) == 10

    # AND a redelivery (or a job the worker marked failed itself) refunds nothing more
    stack.sqs.send_message(QueueUrl=dlq_url, MessageBody=body)
    deliver(stack, recorder, dlq_url, dlq_arn)
    account = credits_of(api, token)
    assert account["balance"] == 10
    assert [e["kind"] for e in account["entries"]].count("refund") == 1
    _ledger_adds_up(api, token)


def test_a_job_the_worker_failed_but_did_not_refund_is_refunded_from_its_dead_letter(
    stack: Stack, api: ApiClient, ada: tuple[str, str], worker_up: None
) -> None:
    from tests.conftest import load_handler
    from tests.integration.test_dead_letters import _queue, deliver

    # GIVEN a job the worker marked failed on its last attempt, then died before refunding it
    token, user_id = ada
    (image_id,) = photos(stack, user_id, 1)
    _, job = api.call("POST", "/api/v1/enhance", body={"image_id": image_id}, token=token)
    JobsRepository(stack.env["JOBS_TABLE"]).update(
        job["job_id"], from_states=(JobState.QUEUED,), to_state=JobState.FAILED
    )
    assert balance(api, token) == 9

    # WHEN its message reaches the dead-letter queue THEN the recorder closes the gap
    dlq_url, dlq_arn = _queue(stack, "GPU_JOBS_DEAD_LETTER_QUEUE_ARN")
    stack.sqs.send_message(
        QueueUrl=dlq_url, MessageBody=json.dumps({"job_id": job["job_id"], "user_id": user_id})
    )
    deliver(stack, load_handler("dead_letters").handler, dlq_url, dlq_arn)
    assert job_item(stack, job["job_id"])["state"] == "failed"
    assert balance(api, token) == 10
    _ledger_adds_up(api, token)
