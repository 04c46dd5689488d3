"""Buying credits against moto and the WeChat Pay sandbox on loopback (self-made merchant and platform
RSA keys, the real wire format): the API handler places orders at the sandbox over HTTP, and the
sandbox's signed, encrypted notifies are delivered to the real API handler as API Gateway events."""

from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from photopipe import wiring
from photopipe.adapters.wechatpay import WechatPayClient, parse_keys
from photopipe.errors import ServiceUnavailableError
from photopipe.models import PayMethod
from tests.conftest import FakeContext, load_event, load_handler
from tests.integration.conftest import ApiClient, Stack
from tests.integration.enhance_support import fleet, register_user
from tests.integration.payments.conftest import Wechat, balance, credits_of, photos


def _order_item(stack: Stack, order_id: str) -> dict[str, Any]:
    item = stack.dynamodb.Table(stack.env["ORDERS_TABLE"]).get_item(Key={"order_id": order_id}).get("Item")
    assert item is not None
    return dict(item)


def _purchases(api: ApiClient, token: str) -> list[dict[str, Any]]:
    return [e for e in credits_of(api, token)["entries"] if e["kind"] == "purchase"]


def _resign(sandbox_headers: dict[str, str], body: bytes, key: rsa.RSAPrivateKey) -> dict[str, str]:
    """The same notify headers, the signature made with another key over the same message."""
    message = (
        f"{sandbox_headers['Wechatpay-Timestamp']}\n{sandbox_headers['Wechatpay-Nonce']}\n".encode()
        + body
        + b"\n"
    )
    signature = base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()
    return {**sandbox_headers, "Wechatpay-Signature": signature}


# ------------------------------------------------------------------ the happy path
def test_buy_pay_and_spend(
    stack: Stack, api: ApiClient, wechat: Wechat, ada: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token, user_id = ada

    # GIVEN the price list
    status, listing = api.call("GET", "/api/v1/payments/packages")
    assert status == 200
    assert listing["payments_enabled"] is True
    ten = next(p for p in listing["packages"] if p["package_id"] == "credits-10")
    assert (ten["credits"], ten["amount"], ten["price"], ten["currency"]) == (10, 100, "¥1.00", "CNY")

    # WHEN the user orders 10 credits (Native: a QR code)
    order = wechat.buy(token, "credits-10", method="native")

    # THEN WeChat Pay holds an order for exactly ¥1.00, expiring in 2 hours, and the user has its code_url
    assert order["state"] == "pending"
    assert order["amount"] == 100
    assert order["credits"] == 10
    assert order["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    placed = wechat.sandbox.order(order["out_trade_no"])
    assert placed.amount == 100
    assert placed.attach == order["order_id"]
    assert placed.time_expire == pytest.approx(time.time() + 7200, abs=30)
    assert placed.notify_url == "http://127.0.0.1:3000/api/v1/payments/wechat/notify"
    assert order["status_url"] == f"/api/v1/payments/orders/{order['order_id']}"

    # WHEN it is paid (the sandbox sends the signed, encrypted notify to our callback)
    delivery = wechat.sandbox.simulate_payment(order["order_id"])

    # THEN WeChat Pay is told it was received, the order is paid and the credits are there
    assert delivery.status == 200
    assert json.loads(delivery.body) == {"code": "SUCCESS", "message": "credited"}
    paid = wechat.order(token, order["order_id"])
    assert paid["state"] == "paid"
    assert paid["paid_at"]
    account = credits_of(api, token)
    assert account["balance"] == 20
    (purchase,) = [e for e in account["entries"] if e["kind"] == "purchase"]
    assert purchase["amount"] == 10
    assert purchase["order_id"] == order["order_id"]
    assert purchase["entry_id"] == f"purchase:{order['order_id']}"
    assert placed.transaction_id
    assert placed.transaction_id in purchase["reason"]
    assert _order_item(stack, order["order_id"])["transaction_id"] == placed.transaction_id

    # AND an enhancement spends one of them
    fleet(stack).register("gpu-1", provider="CUDAExecutionProvider", max_batch=32)
    (image_id,) = photos(stack, user_id, 1)
    status, _ = api.call("POST", "/api/v1/enhance", body={"image_id": image_id}, token=token)
    assert status == 202
    assert balance(api, token) == 19

    # AND the day's payment statistics count the order and its revenue (for administrators)
    wiring.set_admin("ada")  # what `photopipe admin grant ada` does
    status, stats = api.call("GET", "/api/v1/stats/payments", token=token, query={"days": "2"})
    assert status == 200, stats
    assert stats["currency"] == "CNY"
    assert stats["totals"] == {"orders_created": 1, "orders_paid": 1, "revenue_fen": 100, "credits_sold": 10}
    assert len(stats["days"]) == 2
    assert stats["days"][-1]["revenue_fen"] == 100


def test_payment_statistics_are_for_administrators_only(stack: Stack, api: ApiClient, wechat: Wechat) -> None:
    token, _ = register_user(api, "eve")

    status, body = api.call("GET", "/api/v1/stats/payments", token=token)
    assert status == 403
    assert body["error"]["code"] == "admin_only"
    assert api.call("GET", "/api/v1/stats/payments")[0] == 401


def test_a_base64_encoded_notify_is_verified_over_its_decoded_bytes(
    api: ApiClient, wechat: Wechat, ada: tuple[str, str]
) -> None:
    token, _ = ada
    wechat.base64_bodies = True  # API Gateway passes the body base64-encoded
    order = wechat.buy(token)

    delivery = wechat.sandbox.simulate_payment(order["order_id"])

    assert delivery.status == 200
    assert balance(api, token) == 20


# ------------------------------------------------------------------ exactly once
def test_a_replayed_notify_is_answered_success_and_credits_nothing_more(
    stack: Stack, api: ApiClient, wechat: Wechat, ada: tuple[str, str]
) -> None:
    token, _ = ada
    order = wechat.buy(token)
    wechat.sandbox.simulate_payment(order["order_id"])
    headers, body = wechat.sandbox.notification(order["order_id"])

    # WHEN WeChat Pay sends the notify again (it retries until it sees a 2xx), twice
    first = wechat.post_notify(headers, body)
    second = wechat.post_notify(headers, body)

    # THEN both are acknowledged, and the order was credited once
    assert first[0] == second[0] == 200
    assert json.loads(second[1])["code"] == "SUCCESS"
    assert balance(api, token) == 20
    assert len(_purchases(api, token)) == 1


def test_concurrent_notifies_credit_once(
    stack: Stack, api: ApiClient, wechat: Wechat, ada: tuple[str, str], one_request_at_a_time: None
) -> None:
    token, _ = ada
    order = wechat.buy(token)
    wechat.drop_notifies = True
    wechat.sandbox.simulate_payment(order["order_id"])  # paid; its notify lost on the way
    headers, body = wechat.sandbox.notification(order["order_id"])
    payments = wiring.api_services().payments
    start = threading.Barrier(8)

    def deliver(_: int) -> str:
        start.wait()
        answer = payments.handle_notify({k.lower(): v for k, v in headers.items()}, body)
        assert answer.status == 200
        return answer.outcome

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(deliver, range(8)))

    assert sorted(outcomes) == ["already_credited"] * 7 + ["credited"]
    assert balance(api, token) == 20
    assert len(_purchases(api, token)) == 1


# ------------------------------------------------------------------ refused notifies (WeChat Pay sends them again)
def test_a_tampered_notify_body_is_refused_and_credits_nothing(
    api: ApiClient, wechat: Wechat, ada: tuple[str, str]
) -> None:
    token, _ = ada
    order = wechat.buy(token)
    wechat.drop_notifies = True
    wechat.sandbox.simulate_payment(order["order_id"])
    headers, body = wechat.sandbox.notification(order["order_id"])
    envelope = json.loads(body)

    for tampered in (
        body.replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.SUCCESs"),
        json.dumps(envelope).encode(),  # the same content re-serialised: not the bytes that were signed
        body + b"\n",
    ):
        status, answer = wechat.post_notify(headers, tampered)
        assert status == 401
        assert json.loads(answer)["code"] == "FAIL"

    assert wechat.order(token, order["order_id"])["state"] == "pending"
    assert balance(api, token) == 10


def test_a_notify_signed_with_another_key_is_refused(
    api: ApiClient, wechat: Wechat, ada: tuple[str, str]
) -> None:
    token, _ = ada
    order = wechat.buy(token)
    wechat.drop_notifies = True
    wechat.sandbox.simulate_payment(order["order_id"])
    headers, body = wechat.sandbox.notification(order["order_id"])
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    status, answer = wechat.post_notify(_resign(headers, body, impostor), body)

    assert status == 401
    assert "signature" in json.loads(answer)["message"]
    assert balance(api, token) == 10
    # the genuine one still goes through
    assert wechat.post_notify(headers, body)[0] == 200
    assert balance(api, token) == 20


def test_a_notify_with_a_stale_timestamp_is_refused(
    api: ApiClient, wechat: Wechat, ada: tuple[str, str]
) -> None:
    token, _ = ada
    order = wechat.buy(token)
    wechat.drop_notifies = True
    wechat.sandbox.simulate_payment(order["order_id"])
    # correctly signed, but six minutes old: a replay of a captured notify
    headers, body = wechat.sandbox.notification(order["order_id"], timestamp=int(time.time()) - 360)

    status, answer = wechat.post_notify(headers, body)

    assert status == 401
    assert "5 minutes" in json.loads(answer)["message"]
    assert balance(api, token) == 10


def test_a_notify_for_an_unknown_order_is_refused_and_credits_nobody(
    api: ApiClient, wechat: Wechat, ada: tuple[str, str]
) -> None:
    token, _ = ada
    # GIVEN a paid order at WeChat Pay that photopipe never created
    client = wiring.api_services().payments.wechat
    assert client is not None
    client.create_order(
        PayMethod.NATIVE,
        out_trade_no="PPXELSEWHERE0000001",
        description="not ours",
        amount=100,
        notify_url="http://127.0.0.1:3000/api/v1/payments/wechat/notify",
        expires_at=time.time() + 600,
        attach="not-an-order-of-ours",
    )

    delivery = wechat.sandbox.simulate_payment("PPXELSEWHERE0000001")

    assert delivery.status == 404
    assert json.loads(delivery.body)["code"] == "FAIL"
    assert balance(api, token) == 10


# ------------------------------------------------------------------ the notify and the order disagree
def test_a_notify_with_the_wrong_amount_is_checked_with_wechat_pay_and_not_credited(
    stack: Stack, api: ApiClient, wechat: Wechat, ada: tuple[str, str]
) -> None:
    # GIVEN an unpaid ¥1.00 order, and a genuinely signed notify claiming 1 fen was paid
    token, _ = ada
    order = wechat.buy(token)
    claim = {**wechat.sandbox.order(order["order_id"]).transaction(), "trade_state": "SUCCESS"}
    claim["amount"] = {"total": 1, "payer_total": 1, "currency": "CNY", "payer_currency": "CNY"}
    headers, body = wechat.sandbox.notification(order["order_id"], transaction=claim)

    status, answer = wechat.post_notify(headers, body)

    # THEN WeChat Pay's own answer (not paid) decides: received, nothing credited, the order still open
    assert status == 200
    assert "does not confirm" in json.loads(answer)["message"]
    assert wechat.order(token, order["order_id"])["state"] == "pending"
    assert balance(api, token) == 10


def test_when_wechat_pay_confirms_the_order_as_placed_the_payment_is_credited(
    api: ApiClient, wechat: Wechat, ada: tuple[str, str]
) -> None:
    # GIVEN a paid order whose notify arrives garbled (wrong mchid and amount) but correctly signed
    token, _ = ada
    order = wechat.buy(token)
    wechat.drop_notifies = True
    wechat.sandbox.simulate_payment(order["order_id"])
    claim = {**wechat.sandbox.order(order["order_id"]).transaction(), "mchid": "1230000109"}
    claim["amount"] = {"total": 99, "currency": "CNY"}
    headers, body = wechat.sandbox.notification(order["order_id"], transaction=claim)

    status, _ = wechat.post_notify(headers, body)

    # THEN the order query (a signed answer: ¥1.00 paid to us) is what gets credited
    assert status == 200
    assert wechat.order(token, order["order_id"])["state"] == "paid"
    assert balance(api, token) == 20


def test_a_payment_that_does_not_match_its_order_is_kept_for_review(
    stack: Stack, api: ApiClient, wechat: Wechat, ada: tuple[str, str]
) -> None:
    # GIVEN WeChat Pay itself reports a different amount paid for the order
    token, _ = ada
    order = wechat.buy(token)
    wechat.drop_notifies = True
    placed = wechat.sandbox.order(order["order_id"])
    placed.amount = 50  # (what a misconfigured price list at WeChat's side would look like)
    wechat.sandbox.simulate_payment(order["order_id"])
    headers, body = wechat.sandbox.notification(order["order_id"])

    status, answer = wechat.post_notify(headers, body)

    assert status == 200
    assert "review" in json.loads(answer)["message"]
    kept = wechat.order(token, order["order_id"])
    assert kept["state"] == "review"
    assert "amount 50" in kept["review_reason"]
    assert balance(api, token) == 10


# ------------------------------------------------------------------ order checks: lost notifies, expiry
def _run_order_check(order_id: str) -> dict[str, Any]:
    event = load_event("payments-order-check.json")
    event["Records"][0]["body"] = json.dumps({"order_id": order_id})
    return dict(load_handler("payments").handler(event, FakeContext("photopipe-payments")))


def test_a_payment_whose_notify_was_lost_is_credited_by_the_order_check(
    stack: Stack, api: ApiClient, wechat: Wechat, ada: tuple[str, str]
) -> None:
    token, _ = ada
    order = wechat.buy(token)
    # the order's first check is waiting in the queue, delayed
    checks = stack.sqs.receive_message(QueueUrl=stack.env["ORDER_CHECKS_QUEUE_URL"], MaxNumberOfMessages=10)
    assert checks.get("Messages", []) == []  # not visible yet (DelaySeconds)
    wechat.drop_notifies = True
    wechat.sandbox.simulate_payment(order["order_id"])

    result = _run_order_check(order["order_id"])

    assert result == {"batchItemFailures": []}
    assert _order_item(stack, order["order_id"])["state"] == "paid"
    assert balance(api, token) == 20
    # a second check (a redelivery) changes nothing
    _run_order_check(order["order_id"])
    assert balance(api, token) == 20


def test_reading_an_order_pending_a_while_asks_wechat_pay(
    api: ApiClient, wechat: Wechat, ada: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOTOPIPE_ORDER_QUERY_AFTER_SECONDS", "0")
    wiring.reset()
    token, _ = ada
    order = wechat.buy(token)
    wechat.drop_notifies = True
    wechat.sandbox.simulate_payment(order["order_id"])

    assert wechat.order(token, order["order_id"])["state"] == "paid"
    assert balance(api, token) == 20


def test_an_unpaid_order_is_closed_after_two_hours(
    stack: Stack, api: ApiClient, wechat: Wechat, ada: tuple[str, str]
) -> None:
    token, _ = ada
    order = wechat.buy(token)
    item = _order_item(stack, order["order_id"])
    created = datetime.fromisoformat(item["created_at"]).timestamp()
    assert float(item["expires_at"]) - created == pytest.approx(7200, abs=2)
    # WHEN two hours pass with nobody paying (the record and WeChat Pay's order, moved back in time)
    expired = time.time() - 1
    stack.dynamodb.Table(stack.env["ORDERS_TABLE"]).update_item(
        Key={"order_id": order["order_id"]},
        UpdateExpression="SET expires_at = :t",
        ExpressionAttributeValues={":t": Decimal(str(expired))},
    )
    wechat.sandbox.order(order["order_id"]).time_expire = expired

    _run_order_check(order["order_id"])

    # THEN it is closed here and at WeChat Pay, and can no longer be paid
    closed = wechat.order(token, order["order_id"])
    assert closed["state"] == "closed"
    assert closed["closed_at"]
    assert wechat.sandbox.order(order["order_id"]).trade_state == "CLOSED"
    with pytest.raises(Exception, match="closed"):
        wechat.sandbox.simulate_payment(order["order_id"])
    assert balance(api, token) == 10


# ------------------------------------------------------------------ JSAPI and the mini-program login
def test_jsapi_order_for_a_linked_wechat_user(
    stack: Stack, api: ApiClient, wechat: Wechat, ada: tuple[str, str]
) -> None:
    token, _ = ada
    # WHEN the mini-program sends its wx.login() code
    code = wechat.sandbox.login_code(openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o")
    status, link = api.call("POST", "/api/v1/auth/wechat", body={"code": code}, token=token)
    assert status == 200, link
    assert link["openid"] == "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    # a code is good once
    status, body = api.call("POST", "/api/v1/auth/wechat", body={"code": code}, token=token)
    assert status == 400
    assert body["error"]["code"] == "invalid_wechat_code"

    # THEN a JSAPI order needs no openid and comes with signed wx.requestPayment parameters
    order = wechat.buy(token, "credits-60", method="jsapi")
    assert order["code_url"] is None
    params = order["jsapi"]
    assert params["appId"] == wechat.sandbox.keys.appid
    assert params["package"] == f"prepay_id={wechat.sandbox.order(order['order_id']).prepay_id}"
    message = (
        f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n".encode()
    )
    wechat.sandbox.keys.merchant_key.public_key().verify(
        base64.b64decode(params["paySign"]), message, padding.PKCS1v15(), hashes.SHA256()
    )
    assert wechat.sandbox.order(order["order_id"]).openid == "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    wechat.sandbox.simulate_payment(order["order_id"])
    assert balance(api, token) == 70

    # AND another account cannot take the same WeChat identity
    other, _ = register_user(api, "mallory")
    code = wechat.sandbox.login_code(openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o")
    status, body = api.call("POST", "/api/v1/auth/wechat", body={"code": code}, token=other)
    assert status == 409
    assert body["error"]["code"] == "wechat_linked_elsewhere"


def test_a_jsapi_order_without_an_openid_says_how_to_get_one(
    api: ApiClient, wechat: Wechat, ada: tuple[str, str]
) -> None:
    token, _ = ada
    status, body = api.call(
        "POST", "/api/v1/payments/orders", body={"package_id": "credits-10", "method": "jsapi"}, token=token
    )

    assert status == 400
    assert body["error"]["code"] == "openid_required"
    assert "/api/v1/auth/wechat" in body["error"]["message"]


# ------------------------------------------------------------------ bad input, ownership, no configuration
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"package_id": "credits-999"}, 404, "unknown_package"),
        ({"package_id": "credits-10", "method": "alipay"}, 422, "invalid_request"),
        ({"package_id": "credits-10", "amount": 1}, 422, "invalid_request"),  # the client never sets a price
        ({}, 422, "invalid_request"),
    ],
)
def test_bad_orders_get_a_clear_error(
    api: ApiClient, wechat: Wechat, ada: tuple[str, str], body: dict[str, Any], status: int, code: str
) -> None:
    token, _ = ada
    got, answer = api.call("POST", "/api/v1/payments/orders", body=body, token=token)

    assert (got, answer["error"]["code"]) == (status, code)


def test_another_users_order_is_not_found(api: ApiClient, wechat: Wechat, ada: tuple[str, str]) -> None:
    token, _ = ada
    order = wechat.buy(token)
    other, _ = register_user(api, "trudy")

    status, body = api.call("GET", f"/api/v1/payments/orders/{order['order_id']}", token=other)
    assert status == 404
    assert body["error"]["code"] == "order_not_found"
    # a key of the orders table's own rows (a day's counters) is not even a valid order id
    status, body = api.call("GET", "/api/v1/payments/orders/DAY%23today", token=other)
    assert status == 422
    assert body["error"]["code"] == "invalid_request"


def test_a_signed_notify_that_is_not_json_is_refused_not_a_500(api: ApiClient, wechat: Wechat) -> None:
    for body, encoded in ((b"\xff\xfe not utf-8", True), (b"not json", False)):
        headers, _ = wechat.sandbox.notification_headers(body)
        status, answer = wechat.post_notify(headers, body, base64_encoded=encoded)
        assert status == 400, answer
        assert json.loads(answer)["code"] == "FAIL"


def test_without_wechat_pay_configured_orders_answer_503(stack: Stack, api: ApiClient) -> None:
    token, _ = register_user(api, "ned")

    status, body = api.call("POST", "/api/v1/payments/orders", body={"package_id": "credits-10"}, token=token)

    assert status == 503
    assert body["error"]["code"] == "payments_unavailable"
    assert "WechatPayMchId" in body["error"]["message"]
    assert api.call("GET", "/api/v1/payments/packages")[1]["payments_enabled"] is False
    assert balance(api, token) == 10  # credits work without payments


def test_the_sandbox_refuses_requests_not_signed_by_the_merchant(wechat: Wechat) -> None:
    keys = parse_keys(wechat.sandbox.keys.secret_document())
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = impostor.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    doc = json.loads(wechat.sandbox.keys.secret_document()) | {"merchant_private_key": pem}
    wrong = parse_keys(json.dumps(doc))
    client = WechatPayClient(
        mchid=wechat.sandbox.keys.mchid,
        appid=wechat.sandbox.keys.appid,
        keys=lambda: wrong,
        base_url=wechat.sandbox.base_url,
        api_base_url=wechat.sandbox.base_url,
    )

    with pytest.raises(ServiceUnavailableError, match="SIGN_ERROR"):
        client.query("PPD0000000000000001")
    assert keys.merchant_serial_no == wrong.merchant_serial_no  # only the key differs
