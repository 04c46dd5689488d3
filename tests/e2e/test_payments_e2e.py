"""Payments on the live local stack: the WeChat Pay sandbox stands in on loopback, so an order gets a
`code_url`, and paying it through the gateway's sandbox route makes the sandbox send a signed, encrypted
notify that the real callback verifies and credits, once."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import LiveStack

pytestmark = pytest.mark.e2e


def test_buy_credits_and_pay_through_the_sandbox(live: LiveStack) -> None:
    reg = live.post(
        "/api/v1/auth/register",
        json={"username": "payer", "email": "payer@example.com", "password": "a-paying-customer"},
    )
    assert reg.status_code == 201, reg.text
    token = reg.json()["token"]
    assert live.get("/api/v1/credits", token=token).json()["balance"] == 10  # the free allowance

    # WHEN the user orders 10 credits (Native: a QR code to scan)
    packages = live.get("/api/v1/payments/packages").json()
    assert packages["payments_enabled"] is True
    resp = live.post(
        "/api/v1/payments/orders", token=token, json={"package_id": "credits-10", "method": "native"}
    )
    assert resp.status_code == 201, resp.text
    order = resp.json()
    assert order["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert live.get(f"/api/v1/payments/orders/{order['order_id']}", token=token).json()["state"] == "pending"

    # AND pays it (the web UI's sandbox button, `photopipe pay simulate`)
    paid = live.post(f"/sandbox/wechatpay/orders/{order['order_id']}/pay")
    assert paid.status_code == 200, paid.text
    assert paid.json() == {"order_id": order["order_id"], "notify_status": 200, "paid": True}

    # THEN the order is paid and credited once, even when the sandbox sends the notify again
    assert live.post(f"/sandbox/wechatpay/orders/{order['order_id']}/pay").json()["paid"] is True
    assert live.get(f"/api/v1/payments/orders/{order['order_id']}", token=token).json()["state"] == "paid"
    account = live.get("/api/v1/credits", token=token).json()
    assert account["balance"] == 20
    assert [e["kind"] for e in account["entries"]].count("purchase") == 1


def test_paying_an_order_the_sandbox_never_saw_is_a_clear_404(live: LiveStack) -> None:
    resp = live.post("/sandbox/wechatpay/orders/no-such-order/pay")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "no_such_order"
