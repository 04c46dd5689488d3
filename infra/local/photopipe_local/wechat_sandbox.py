"""A WeChat Pay sandbox on loopback: it stands in for WeChat Pay API v3 (and the mini-program login) with
the real wire format, so the API's real client, signatures and notify verification run locally and in the
tests. Its crypto is written here from WeChat Pay's documentation, not shared with `photopipe`, so a
mistake on one side shows up as a refused request or notify.

What it serves (every `/v3` request must carry a valid `WECHATPAY2-SHA256-RSA2048` Authorization made with
the merchant key; every answer is signed with the sandbox's own platform key, public-key mode):

- `POST /v3/pay/transactions/native` -> `{"code_url"}`, `POST /v3/pay/transactions/jsapi` -> `{"prepay_id"}`;
- `GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=` -> the transaction (404 ORDER_NOT_EXIST);
- `POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close` -> 204 (400 ORDERPAID once paid);
- `GET /sns/jscode2session` (codes from `login_code()`), as `api.weixin.qq.com` answers it;
- `POST /sandbox/orders/{ref}/pay` -> pays the order and sends its notify (`simulate_payment`), for
  `photopipe pay simulate ORDER_ID` and the web UI's sandbox button; `GET /sandbox/orders` lists orders.

    with WechatPaySandbox() as sandbox:                   # or .start() / .stop()
        env = sandbox.environment()                       # WECHAT_PAY_MCHID, WECHAT_APPID, *_BASE_URL
        secret = sandbox.keys.secret_document()           # what the WechatPaySecret must hold
        ...                                               # POST /api/v1/payments/orders
        sandbox.simulate_payment(order_id)                # signed, encrypted notify to the order's notify_url

Written on `http.server` (as the local gateway and the other fakes): a few JSON routes on loopback need
nothing more, and the local stack's process stays free of another web framework."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import urllib3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
CHINA = timezone(timedelta(hours=8))
MAX_SKEW_S = 300

# (url, headers, body) -> (status, body): how a notify reaches the merchant (HTTP POST by default).
Deliver = Callable[[str, Mapping[str, str], bytes], tuple[int, bytes]]


def _pem_private(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pem_public(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def _china_time(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), CHINA).isoformat(timespec="seconds")


@dataclass(frozen=True)
class SandboxKeys:
    """Everything both sides hold: the merchant's key pair (the sandbox checks requests with its public
    half), the sandbox's platform key pair (WeChat Pay's public key in public-key mode), the APIv3 key and
    the mini-program's AppSecret. Self-made on each start unless given."""

    mchid: str
    appid: str
    app_secret: str
    apiv3_key: str
    merchant_serial_no: str
    merchant_key: rsa.RSAPrivateKey
    public_key_id: str
    platform_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls, *, mchid: str = "1900000109", appid: str = "wx8888888888888888") -> SandboxKeys:
        return cls(
            mchid=mchid,
            appid=appid,
            app_secret=secrets.token_hex(16),
            apiv3_key=secrets.token_hex(16),  # 32 characters, as the merchant platform makes them
            merchant_serial_no=secrets.token_hex(20).upper(),
            merchant_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
            public_key_id=f"PUB_KEY_ID_{mchid}{secrets.randbelow(10**12):012d}",
            platform_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        )

    @property
    def platform_public_key_pem(self) -> str:
        return _pem_public(self.platform_key.public_key())

    def secret_document(self) -> str:
        """The JSON the API's WeChat Pay secret (`WECHAT_PAY_SECRET_ID`) must hold to talk to this sandbox."""
        return json.dumps(
            {
                "merchant_private_key": _pem_private(self.merchant_key),
                "merchant_serial_no": self.merchant_serial_no,
                "apiv3_key": self.apiv3_key,
                "wechatpay_public_key_id": self.public_key_id,
                "wechatpay_public_key": self.platform_public_key_pem,
                "miniprogram_secret": self.app_secret,
            }
        )

    def __repr__(self) -> str:  # never the key material
        return (
            f"SandboxKeys(mchid={self.mchid!r}, appid={self.appid!r}, public_key_id={self.public_key_id!r})"
        )


@dataclass
class SandboxOrder:
    out_trade_no: str
    trade_type: str  # NATIVE | JSAPI
    appid: str
    mchid: str
    description: str
    amount: int
    currency: str
    notify_url: str
    time_expire: float
    attach: str | None = None
    openid: str | None = None
    trade_state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: str | None = None
    code_url: str | None = None
    prepay_id: str | None = None
    request: dict[str, Any] = field(default_factory=dict)

    def transaction(self) -> dict[str, Any]:
        """The order as WeChat Pay reports it (query answer, notify resource)."""
        # Past its time_expire an unpaid order can no longer be paid, but stays NOTPAY until the merchant
        # closes it (WeChat Pay's advice: close an order you will not collect).
        state = self.trade_state
        body: dict[str, Any] = {
            "appid": self.appid,
            "mchid": self.mchid,
            "out_trade_no": self.out_trade_no,
            "trade_type": self.trade_type,
            "trade_state": state,
            "trade_state_desc": {"SUCCESS": "支付成功", "NOTPAY": "未支付", "CLOSED": "已关闭"}.get(
                state, state
            ),
            "attach": self.attach or "",
            "amount": {"total": self.amount, "currency": self.currency},
        }
        if self.trade_state == "SUCCESS":
            body.update(
                transaction_id=self.transaction_id,
                bank_type="OTHERS",
                success_time=self.success_time,
                payer={"openid": self.openid},
                amount={
                    "total": self.amount,
                    "payer_total": self.amount,
                    "currency": self.currency,
                    "payer_currency": self.currency,
                },
            )
        return body


@dataclass(frozen=True)
class Delivery:
    """What the merchant answered a notify."""

    url: str
    status: int
    body: bytes

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


class SandboxError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _http_deliver(url: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
    resp = urllib3.request("POST", url, body=body, headers=dict(headers), timeout=10.0, retries=False)
    return resp.status, resp.data


class WechatPaySandbox:
    def __init__(
        self,
        keys: SandboxKeys | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        deliver: Deliver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys or SandboxKeys.generate()
        self.host, self.requested_port = host, port
        self.deliver = deliver or _http_deliver
        self.clock = clock
        self._lock = threading.Lock()
        self._orders: dict[str, SandboxOrder] = {}
        self._codes: dict[str, str | None] = {}  # wx.login() code -> openid (None once used)
        self.deliveries: list[Delivery] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> WechatPaySandbox:
        sandbox = self

        class Handler(_Handler):
            owner = sandbox

        self._server = ThreadingHTTPServer((self.host, self.requested_port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="wechat-sandbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> WechatPaySandbox:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def started(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the sandbox is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def environment(self, api_url: str | None = None) -> dict[str, str]:
        """The API's settings that point it at this sandbox (the secret is `keys.secret_document()`).
        With `api_url` (e.g. http://127.0.0.1:3000), notifies go to its callback route whatever host the
        orders came in through."""
        env = {
            "WECHAT_PAY_MCHID": self.keys.mchid,
            "WECHAT_APPID": self.keys.appid,
            "WECHAT_PAY_BASE_URL": self.base_url,
            "WECHAT_API_BASE_URL": self.base_url,
        }
        if api_url:
            env["WECHAT_PAY_NOTIFY_URL"] = api_url.rstrip("/") + "/api/v1/payments/wechat/notify"
        return env

    # ------------------------------------------------------------------ orders
    def orders(self) -> list[SandboxOrder]:
        with self._lock:
            return list(self._orders.values())

    def order(self, ref: str) -> SandboxOrder:
        """An order by its out_trade_no, or by the merchant's own id sent as `attach` (photopipe's order id)."""
        with self._lock:
            if ref in self._orders:
                return self._orders[ref]
            for order in self._orders.values():
                if order.attach == ref:
                    return order
        raise KeyError(f"the sandbox has no order {ref!r}")

    def simulate_payment(self, ref: str, *, openid: str | None = None) -> Delivery:
        """Pay the order (as a WeChat user scanning its code would) and send the notify, correctly signed
        and encrypted, to the order's notify_url. Paying it again only sends the notify again."""
        order = self.order(ref)
        now = self.clock()
        with self._lock:
            if order.trade_state == "NOTPAY" and now >= order.time_expire:
                raise SandboxError(400, "ORDER_CLOSED", f"order {order.out_trade_no} expired unpaid")
            if order.trade_state == "CLOSED":
                raise SandboxError(400, "ORDER_CLOSED", f"order {order.out_trade_no} is closed")
            if order.trade_state != "SUCCESS":
                order.trade_state = "SUCCESS"
                order.transaction_id = f"4200{int(now):010d}{secrets.randbelow(10**14):014d}"
                order.success_time = _china_time(now)
                order.openid = order.openid or openid or f"o-sandbox-{secrets.token_hex(8)}"
        headers, body = self.notification(order.out_trade_no)
        return self.send(order.notify_url, headers, body)

    def notification(
        self,
        ref: str,
        *,
        event_type: str = "TRANSACTION.SUCCESS",
        transaction: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """A notify for the order as WeChat Pay would send it, without sending it: (headers, body). The
        resource is `transaction` when given (e.g. a wrong amount), else the order's current state."""
        order = self.order(ref)
        now = self.clock()
        plaintext = json.dumps(
            dict(transaction) if transaction is not None else order.transaction(), ensure_ascii=False
        ).encode()
        nonce = secrets.token_urlsafe(9)[:12]
        ciphertext = AESGCM(self.keys.apiv3_key.encode()).encrypt(nonce.encode(), plaintext, b"transaction")
        envelope = {
            "id": str(uuid.uuid4()),
            "create_time": _china_time(now),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": "支付成功",
            "resource": {
                "original_type": "transaction",
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(ciphertext).decode(),
                "associated_data": "transaction",
                "nonce": nonce,
            },
        }
        body = json.dumps(envelope, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", **self._signature(body, timestamp=timestamp)}
        return headers, body

    def notification_headers(
        self, body: bytes, *, timestamp: int | None = None
    ) -> tuple[dict[str, str], bytes]:
        """WeChat Pay's signature headers for any body (a test sending something that is not a notify)."""
        return {"Content-Type": "application/json", **self._signature(body, timestamp=timestamp)}, body

    def send(self, url: str, headers: Mapping[str, str], body: bytes) -> Delivery:
        status, answer = self.deliver(url, headers, body)
        delivery = Delivery(url=url, status=status, body=answer)
        with self._lock:
            self.deliveries.append(delivery)
        return delivery

    def _signature(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        ts = str(int(self.clock()) if timestamp is None else timestamp)
        nonce = secrets.token_hex(16)
        message = f"{ts}\n{nonce}\n".encode() + body + b"\n"
        return {
            "Wechatpay-Timestamp": ts,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Serial": self.keys.public_key_id,
            "Wechatpay-Signature": _sign(self.keys.platform_key, message),
            "Wechatpay-Signature-Type": SIGNATURE_TYPE,
            "Request-ID": str(uuid.uuid4()),
        }

    # ------------------------------------------------------------------ mini-program login
    def login_code(self, openid: str | None = None) -> str:
        """A one-use code, as `wx.login()` gives the mini-program, for code2session to resolve."""
        code = secrets.token_hex(16)
        with self._lock:
            self._codes[code] = openid or f"o-sandbox-{secrets.token_hex(8)}"
        return code

    # ------------------------------------------------------------------ the wire
    def _authorize(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> None:
        """Check the merchant's Authorization the way WeChat Pay does (401 SIGN_ERROR otherwise)."""
        value = headers.get("authorization", "")
        scheme, _, params = value.partition(" ")
        if scheme != SIGNATURE_TYPE:
            raise SandboxError(401, "SIGN_ERROR", "Authorization must be WECHATPAY2-SHA256-RSA2048")
        fields = {}
        for part in params.split(","):
            name, _, quoted = part.strip().partition("=")
            fields[name] = quoted.strip('"')
        if fields.get("mchid") != self.keys.mchid or fields.get("serial_no") != self.keys.merchant_serial_no:
            raise SandboxError(401, "SIGN_ERROR", "unknown merchant or certificate serial")
        try:
            ts = int(fields.get("timestamp", ""))
        except ValueError:
            raise SandboxError(401, "SIGN_ERROR", "bad timestamp") from None
        if abs(self.clock() - ts) > MAX_SKEW_S:
            raise SandboxError(401, "SIGN_ERROR", "timestamp too far from now")
        message = f"{method}\n{target}\n{ts}\n{fields.get('nonce_str', '')}\n".encode() + body + b"\n"
        try:
            self.keys.merchant_key.public_key().verify(
                base64.b64decode(fields.get("signature", "")), message, padding.PKCS1v15(), hashes.SHA256()
            )
        except (InvalidSignature, ValueError):
            raise SandboxError(401, "SIGN_ERROR", "signature does not verify") from None

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> tuple[int, Any]:
        """One request: (status, JSON body or None). Raises SandboxError for WeChat Pay's error answers."""
        path = urlsplit(target).path
        if path.startswith("/v3/"):
            self._authorize(method, target, headers, body)
            return self._v3(method, path, body)
        if method == "GET" and path == "/sns/jscode2session":
            return 200, self._code2session(parse_qs(urlsplit(target).query))
        if method == "GET" and path == "/sandbox/orders":
            return 200, {"orders": [o.transaction() | {"notify_url": o.notify_url} for o in self.orders()]}
        if method == "POST" and path.startswith("/sandbox/orders/") and path.endswith("/pay"):
            ref = unquote(path.removeprefix("/sandbox/orders/").removesuffix("/pay"))
            try:
                delivery = self.simulate_payment(ref)
            except KeyError as e:
                raise SandboxError(404, "ORDER_NOT_EXIST", str(e)) from None
            return 200, {
                "notify_url": delivery.url,
                "status": delivery.status,
                "answer": delivery.body.decode(),
            }
        raise SandboxError(404, "NOT_FOUND", f"no route {method} {path}")

    def _v3(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if method == "POST" and path in ("/v3/pay/transactions/native", "/v3/pay/transactions/jsapi"):
            return self._create(path.rsplit("/", 1)[-1].upper(), body)
        prefix = "/v3/pay/transactions/out-trade-no/"
        if path.startswith(prefix):
            rest = unquote(path.removeprefix(prefix))
            if method == "GET" and "/" not in rest:
                with self._lock:
                    order = self._orders.get(rest)
                if order is None:
                    raise SandboxError(404, "ORDER_NOT_EXIST", "订单不存在")
                return 200, order.transaction()
            if method == "POST" and rest.endswith("/close"):
                return self._close(rest.removesuffix("/close"))
        raise SandboxError(404, "NOT_FOUND", f"no route {method} {path}")

    def _create(self, trade_type: str, body: bytes) -> tuple[int, Any]:
        try:
            req = json.loads(body)
            amount = req["amount"]
            total = amount["total"]
            expires = (
                datetime.fromisoformat(req["time_expire"]).timestamp() if req.get("time_expire") else None
            )
            fields = (req["appid"], req["mchid"], req["description"], req["out_trade_no"], req["notify_url"])
        except (KeyError, TypeError, ValueError) as e:
            raise SandboxError(400, "PARAM_ERROR", f"missing or malformed field: {e}") from None
        appid, mchid, description, out_trade_no, notify_url = fields
        if appid != self.keys.appid or mchid != self.keys.mchid:
            raise SandboxError(400, "APPID_MCHID_NOT_MATCH", "appid and mchid do not match")
        if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
            raise SandboxError(400, "PARAM_ERROR", "amount.total must be a positive integer (fen)")
        if not (6 <= len(out_trade_no) <= 32) or not notify_url.startswith(("https://", "http://")):
            raise SandboxError(400, "PARAM_ERROR", "out_trade_no must be 6-32 characters; notify_url a URL")
        openid = (req.get("payer") or {}).get("openid")
        if trade_type == "JSAPI" and not openid:
            raise SandboxError(400, "PARAM_ERROR", "payer.openid is required for JSAPI")
        with self._lock:
            existing = self._orders.get(out_trade_no)
            if existing is not None:
                if existing.trade_state == "SUCCESS":
                    raise SandboxError(400, "ORDERPAID", "该订单已支付")
                if existing.request != req:
                    raise SandboxError(400, "INVALID_REQUEST", "out_trade_no was used with other parameters")
                order = existing
            else:
                order = SandboxOrder(
                    out_trade_no=out_trade_no,
                    trade_type=trade_type,
                    appid=appid,
                    mchid=mchid,
                    description=description,
                    amount=total,
                    currency=str(amount.get("currency") or "CNY"),
                    notify_url=notify_url,
                    time_expire=expires if expires is not None else self.clock() + 7200,
                    attach=req.get("attach"),
                    openid=openid,
                    code_url=f"weixin://wxpay/bizpayurl?pr={secrets.token_urlsafe(6)}"
                    if trade_type == "NATIVE"
                    else None,
                    prepay_id=f"wx{secrets.token_hex(15)}" if trade_type == "JSAPI" else None,
                    request=req,
                )
                self._orders[out_trade_no] = order
        return 200, {"code_url": order.code_url} if trade_type == "NATIVE" else {"prepay_id": order.prepay_id}

    def _close(self, out_trade_no: str) -> tuple[int, Any]:
        with self._lock:
            order = self._orders.get(out_trade_no)
            if order is None:
                raise SandboxError(404, "ORDER_NOT_EXIST", "订单不存在")
            if order.trade_state == "SUCCESS":
                raise SandboxError(400, "ORDERPAID", "订单已支付")
            order.trade_state = "CLOSED"
        return 204, None

    def _code2session(self, query: Mapping[str, list[str]]) -> dict[str, Any]:
        def one(name: str) -> str:
            return (query.get(name) or [""])[0]

        if one("appid") != self.keys.appid:
            return {"errcode": 40013, "errmsg": "invalid appid"}
        if one("secret") != self.keys.app_secret:
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        code = one("js_code")
        with self._lock:
            if code not in self._codes:
                return {"errcode": 40029, "errmsg": "invalid code"}
            openid = self._codes[code]
            if openid is None:
                return {"errcode": 40163, "errmsg": "code been used"}
            self._codes[code] = None
        return {"openid": openid, "session_key": base64.b64encode(secrets.token_bytes(16)).decode()}


class _Handler(BaseHTTPRequestHandler):
    owner: WechatPaySandbox
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and the local stack log themselves
        return

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, answer = self.owner.handle(self.command, self.path, headers, body)
        except SandboxError as e:
            status, answer = e.status, {"code": e.code, "message": e.message}
        payload = b"" if answer is None else json.dumps(answer, ensure_ascii=False).encode()
        self.send_response(status)
        if self.path.startswith("/v3/"):
            for name, value in self.owner._signature(payload).items():
                self.send_header(name, value)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    do_GET = _serve
    do_POST = _serve
