"""The sandbox as the local stack, the CLI and the web UI use it: over HTTP on loopback, its control route
paying an order and POSTing the notify to the merchant's URL (here a small receiver), where photopipe's
client verifies and decrypts it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import urllib3

from photopipe.adapters.wechatpay import WechatPayClient, parse_keys
from photopipe.models import PayMethod, WechatTransaction
from photopipe_local.wechat_sandbox import WechatPaySandbox


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]]

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(({k: v for k, v in self.headers.items()}, body))
        answer = b'{"code": "SUCCESS", "message": "ok"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v1/payments/wechat/notify", received
    server.shutdown()
    server.server_close()


def test_the_control_route_pays_and_posts_a_notify_photopipe_verifies(
    receiver: tuple[str, list[tuple[dict[str, str], bytes]]],
) -> None:
    notify_url, received = receiver
    with WechatPaySandbox() as sandbox:
        keys = parse_keys(sandbox.keys.secret_document())
        env = sandbox.environment(api_url="http://127.0.0.1:3000")
        client = WechatPayClient(
            mchid=env["WECHAT_PAY_MCHID"],
            appid=env["WECHAT_APPID"],
            keys=lambda: keys,
            base_url=env["WECHAT_PAY_BASE_URL"],
            api_base_url=env["WECHAT_API_BASE_URL"],
        )
        assert env["WECHAT_PAY_NOTIFY_URL"] == "http://127.0.0.1:3000/api/v1/payments/wechat/notify"
        code_url = client.create_order(
            PayMethod.NATIVE,
            out_trade_no="PPD2612010000000042",
            description="10 photopipe credits",
            amount=100,
            notify_url=notify_url,
            expires_at=time.time() + 7200,
            attach="our-order-id",
        )
        assert code_url.startswith("weixin://wxpay/bizpayurl?pr=")

        # WHEN the CLI (photopipe pay simulate) asks the sandbox to pay our order, by our order id
        resp = urllib3.request("POST", f"{sandbox.base_url}/sandbox/orders/our-order-id/pay")
        listing = urllib3.request("GET", f"{sandbox.base_url}/sandbox/orders")

        # THEN the merchant received a notify it verifies and decrypts to the paid transaction
        assert resp.status == 200
        assert json.loads(resp.data)["status"] == 200
        ((headers, body),) = received
        notification, plaintext = client.open_notification(headers, body)
        transaction = WechatTransaction.model_validate_json(plaintext)
        assert notification.event_type == "TRANSACTION.SUCCESS"
        assert transaction.paid
        assert (transaction.out_trade_no, transaction.attach) == ("PPD2612010000000042", "our-order-id")
        assert transaction.amount is not None
        assert transaction.amount.total == 100
        assert json.loads(listing.data)["orders"][0]["trade_state"] == "SUCCESS"
        # and an order it does not know is a 404 in WeChat Pay's error format
        missing = urllib3.request("POST", f"{sandbox.base_url}/sandbox/orders/nope/pay")
        assert missing.status == 404
        assert json.loads(missing.data)["code"] == "ORDER_NOT_EXIST"
