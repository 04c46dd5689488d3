"""The pure parts of `credits`, `buy`, `pay simulate` and `local dlq`: prices, ledger rows, the QR code,
how a sandbox answer is read, and which live messages `buy --wait` listens to."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from photopipe_cli.commands.credits import _price, _sandbox_answer, ledger_rows, qr_text
from photopipe_cli.commands.dlq import _about, _reason
from photopipe_cli.dlq import DeadLetter, Subject
from photopipe_cli.errors import CliError, ExitCode, NotFound
from photopipe_cli.live import ORDERS, _parse


def answer(status: int, body: Any) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    return response


def test_prices_are_fen_shown_as_yuan() -> None:
    assert [_price(100), _price(990), _price(5), _price(None)] == ["¥1.00", "¥9.90", "¥0.05", "-"]
    assert _price(250, "USD") == "USD 2.50"


def test_ledger_rows_sign_the_amounts_and_name_the_order_or_job() -> None:
    rows = ledger_rows(
        [
            {"kind": "purchase", "amount": 10, "reason": "bought credits-10", "order_id": "o1", "at": None},
            {"kind": "spend", "amount": -1, "reason": "enhance", "job_id": "j1", "at": None},
            {"kind": "grant", "amount": 10, "reason": "welcome", "at": None},
        ]
    )
    assert [row[1:] for row in rows] == [
        ("purchase", "+10", "bought credits-10", "o1"),
        ("spend", "-1", "enhance", "j1"),
        ("grant", "+10", "welcome", "-"),
    ]


def test_the_qr_code_is_square_unicode_blocks_with_a_quiet_zone() -> None:
    lines = qr_text("weixin://wxpay/bizpayurl?pr=abc123").splitlines()
    assert len({len(line) for line in lines}) == 1  # every line as wide as the others
    assert set("".join(lines)) <= {" ", "█", "▀", "▄"}
    assert len(lines[0]) >= 25  # version 2 or more, plus the border
    assert "\x1b" not in "".join(lines)  # no colour codes: it survives a pipe and NO_COLOR


def test_a_sandbox_payment_is_its_answer() -> None:
    body = {"order_id": "o1", "notify_status": 200, "paid": True}
    assert _sandbox_answer("http://127.0.0.1:3000", "o1", answer(200, body)) == body


def test_an_unknown_order_is_not_found() -> None:
    with pytest.raises(NotFound) as info:
        _sandbox_answer("http://s", "o1", answer(404, {"error": {"code": "no_such_order", "message": "no"}}))
    assert info.value.code is ExitCode.NOT_FOUND


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, {"error": {"code": "not_found", "message": "no route"}}),  # the HTTP API: no sandbox route
        (404, {"message": "Not Found"}),  # API Gateway
        (403, {"message": "Missing Authentication Token"}),  # API Gateway, REST
        (405, {"error": {"code": "method_not_allowed", "message": "no"}}),
        (200, {"something": "else"}),  # a web page or another service at that path
    ],
)
def test_a_server_without_the_sandbox_is_refused_clearly(status: int, body: Any) -> None:
    with pytest.raises(CliError) as info:
        _sandbox_answer("https://api.example.com", "o1", answer(status, body))
    assert info.value.code is ExitCode.FAILED
    assert info.value.message.startswith(
        "https://api.example.com is not a local stack with a WeChat Pay sandbox"
    )


def test_a_sandbox_refusal_is_its_message() -> None:
    refused = answer(409, {"error": {"code": "order_paid", "message": "the order is already paid"}})
    with pytest.raises(CliError) as info:
        _sandbox_answer("http://s", "o1", refused)
    assert info.value.message == "the sandbox refused to pay order o1: the order is already paid"


def test_buy_wait_hears_orders_and_the_others_photos_and_jobs() -> None:
    order = json.dumps({"type": "order.updated", "order_id": "o1", "state": "paid", "at": "t"})
    image = json.dumps({"type": "image.updated", "image_id": "i1", "state": "processed", "at": "t"})
    assert _parse(order, ORDERS) == json.loads(order)
    assert _parse(image, ORDERS) is None
    assert _parse(order) is None  # upload --wait, enhance --wait and watch are not told about orders
    assert _parse(image) == json.loads(image)


def test_a_dead_letter_says_what_it_is_about_and_why() -> None:
    letter = DeadLetter(
        queue="ClassifyRedriveQueue",
        message_id="m1",
        body="{}",
        sent_at=None,
        receive_count=1,
        subject=Subject("image", "i1", "classification_failed", "classification_gave_up", "gave up"),
    )
    assert (_about(letter), _reason(letter)) == ("image i1", "classification_gave_up: gave up")
    unknown = DeadLetter("Q", "m2", "x", None, 0, Subject("unknown"))
    assert (_about(unknown), _reason(unknown)) == ("unknown", "-")
