"""WeChat Pay API v3, the parts photopipe uses, as a thin client on `cryptography` and urllib3:

- requests signed `WECHATPAY2-SHA256-RSA2048` with the merchant's private key (`Authorization`);
- answers and notifies verified with WeChat Pay's public key (public-key mode, `PUB_KEY_ID_...`) or a
  platform certificate, picked by `Wechatpay-Serial`, over the exact bytes received, refusing a timestamp
  more than 5 minutes off;
- a notify's resource decrypted with AES-256-GCM and the APIv3 key;
- Native and JSAPI orders, the order query and close, JSAPI `paySign`, and the mini-program `code2session`.

Why not the `wechatpayv3` package (2.0.4, read for this): it has no test suite, its gateway URL is
hard-coded (`https://api.mch.weixin.qq.com`, so no sandbox can stand in), it never checks the timestamp
of a notify (a captured one replays forever), in certificate mode it downloads certificates over the
network at construction and again for every unknown serial a caller sends, it swallows errors with bare
`except:` and returns None, and its debug logging writes the request headers and decrypted bodies. The
signing itself is a few lines over `cryptography`, which is what is well tested here.

Nothing secret is logged: not the keys, not the `Authorization` header, not a decrypted resource, not
the code2session URL (it carries the AppSecret) or its `session_key`."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import urllib3
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import ValidationError

from photopipe.errors import (
    BadRequestError,
    ServiceUnavailableError,
    TransientError,
    UnauthorizedError,
)
from photopipe.models import PayMethod, WechatNotification, WechatTransaction

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
MAX_CLOCK_SKEW_S = 300
CHINA = timezone(timedelta(hours=8))
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


# ---------------------------------------------------------------------------------------- keys
@dataclass(frozen=True)
class WechatPayKeys:
    """The merchant's credentials, parsed from the Secrets Manager document (see `parse_keys`)."""

    merchant_key: rsa.RSAPrivateKey
    merchant_serial_no: str
    apiv3_key: bytes
    platform_keys: Mapping[str, rsa.RSAPublicKey]  # by the serial WeChat Pay sends in Wechatpay-Serial
    miniprogram_secret: str | None = None

    def __repr__(self) -> str:  # never the key material
        return f"WechatPayKeys(serial={self.merchant_serial_no!r}, platform={sorted(self.platform_keys)})"


DOCUMENT_FIELDS = (
    "merchant_private_key (PEM), merchant_serial_no, apiv3_key (32 characters), and WeChat Pay's public key "
    "(wechatpay_public_key_id + wechatpay_public_key, PEM) or platform_certificates (a list of PEM "
    "certificates); optional miniprogram_secret (the AppSecret, for POST /auth/wechat)"
)


def _unusable(setting: str, problem: str) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"WeChat Pay is not usable: the secret named by {setting} {problem}. It must be a JSON object with "
        f"{DOCUMENT_FIELDS}",
        code="payments_unavailable",
    )


@lru_cache(maxsize=4)
def parse_keys(document: str, setting: str = "WECHAT_PAY_SECRET_ID") -> WechatPayKeys:
    """Parse the credentials document once per version of the secret (errors never quote the keys)."""
    try:
        doc = json.loads(document)
    except json.JSONDecodeError:
        raise _unusable(setting, "is not JSON") from None
    if not isinstance(doc, dict):
        raise _unusable(setting, "is not a JSON object")
    missing = [k for k in ("merchant_private_key", "merchant_serial_no", "apiv3_key") if not doc.get(k)]
    if missing:
        raise _unusable(setting, f"lacks {', '.join(missing)}")
    try:
        merchant_key = serialization.load_pem_private_key(str(doc["merchant_private_key"]).encode(), None)
    except (ValueError, TypeError):
        raise _unusable(setting, "has a merchant_private_key that is not a PEM private key") from None
    if not isinstance(merchant_key, rsa.RSAPrivateKey):
        raise _unusable(setting, "has a merchant_private_key that is not an RSA key")
    apiv3 = str(doc["apiv3_key"]).encode()
    if len(apiv3) != 32:
        raise _unusable(setting, "has an apiv3_key that is not 32 bytes long")
    platform: dict[str, rsa.RSAPublicKey] = {}
    if doc.get("wechatpay_public_key") or doc.get("wechatpay_public_key_id"):
        try:
            public = serialization.load_pem_public_key(str(doc["wechatpay_public_key"]).encode())
        except (ValueError, TypeError, KeyError):
            raise _unusable(setting, "has a wechatpay_public_key that is not a PEM public key") from None
        if not isinstance(public, rsa.RSAPublicKey) or not doc.get("wechatpay_public_key_id"):
            raise _unusable(setting, "needs wechatpay_public_key_id with an RSA wechatpay_public_key")
        platform[str(doc["wechatpay_public_key_id"])] = public
    now = datetime.now(UTC)
    for pem in doc.get("platform_certificates") or []:
        try:
            cert = x509.load_pem_x509_certificate(str(pem).encode())
        except ValueError:
            raise _unusable(setting, "has a platform certificate that is not PEM") from None
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey) and cert.not_valid_after_utc > now:
            platform[format(cert.serial_number, "X")] = key
    if not platform:
        raise _unusable(setting, "has no (unexpired) WeChat Pay public key or platform certificate")
    secret = doc.get("miniprogram_secret")
    return WechatPayKeys(
        merchant_key=merchant_key,
        merchant_serial_no=str(doc["merchant_serial_no"]),
        apiv3_key=apiv3,
        platform_keys=platform,
        miniprogram_secret=str(secret) if secret else None,
    )


# ---------------------------------------------------------------------------------------- signatures
def nonce_str() -> str:
    return secrets.token_hex(16)


def rsa_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    """SHA256withRSA (PKCS#1 v1.5), base64: what every WeChat Pay v3 signature is."""
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def authorization(
    *,
    mchid: str,
    serial_no: str,
    key: rsa.RSAPrivateKey,
    method: str,
    url: str,
    body: bytes,
    now: int,
    nonce: str,
) -> str:
    """The `Authorization` header of a request: the signature over `METHOD\\nURL\\nTS\\nNONCE\\nBODY\\n`,
    where URL is the path plus query the server receives."""
    message = f"{method}\n{url}\n{now}\n{nonce}\n".encode() + body + b"\n"
    return (
        f'{SIGNATURE_TYPE} mchid="{mchid}",nonce_str="{nonce}",signature="{rsa_sign(key, message)}",'
        f'timestamp="{now}",serial_no="{serial_no}"'
    )


def verify_signature(
    keys: WechatPayKeys, headers: Mapping[str, str], body: bytes, *, now: float, what: str = "notify"
) -> None:
    """Check a WeChat Pay signature (an answer or a notify) over the exact bytes received. Raises
    `UnauthorizedError` with a code saying why."""
    h = {k.lower(): v for k, v in headers.items()}
    signature = h.get("wechatpay-signature")
    timestamp = h.get("wechatpay-timestamp")
    nonce = h.get("wechatpay-nonce")
    serial = h.get("wechatpay-serial")
    if not (signature and timestamp and nonce and serial):
        raise UnauthorizedError(
            f"the {what} lacks the Wechatpay-Signature, -Timestamp, -Nonce or -Serial header",
            code="missing_signature",
        )
    kind = h.get("wechatpay-signature-type")
    if kind and kind != SIGNATURE_TYPE:
        raise UnauthorizedError(
            f"the {what} is signed with {kind!r}, not {SIGNATURE_TYPE}", code="invalid_signature"
        )
    try:
        ts = int(timestamp)
    except ValueError:
        raise UnauthorizedError(
            f"the {what}'s Wechatpay-Timestamp is not a number", code="invalid_signature"
        ) from None
    if abs(now - ts) > MAX_CLOCK_SKEW_S:
        raise UnauthorizedError(
            f"the {what}'s timestamp is {int(now - ts)} s off this server's clock (more than 5 minutes): refused",
            code="stale_timestamp",
        )
    public = keys.platform_keys.get(serial) or keys.platform_keys.get(serial.upper())
    if public is None:
        raise UnauthorizedError(
            f"the {what} is signed with key {serial!r}, which is not one of WeChat Pay's keys configured here",
            code="unknown_serial",
        )
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    try:
        public.verify(
            base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256()
        )
    except (InvalidSignature, binascii.Error, ValueError):
        raise UnauthorizedError(f"the {what}'s signature does not verify", code="invalid_signature") from None


def decrypt_resource(apiv3_key: bytes, *, ciphertext: str, nonce: str, associated_data: str) -> bytes:
    """AEAD_AES_256_GCM with the APIv3 key (the tag is the ciphertext's last 16 bytes)."""
    try:
        return AESGCM(apiv3_key).decrypt(
            nonce.encode(), base64.b64decode(ciphertext, validate=True), associated_data.encode()
        )
    except (InvalidTag, binascii.Error, ValueError):
        raise UnauthorizedError(
            "the notify's resource does not decrypt with the APIv3 key configured here", code="undecryptable"
        ) from None


def time_expire(expires_at: float) -> str:
    """RFC 3339 in China time, the form WeChat Pay takes (`2026-12-01T20:00:00+08:00`)."""
    return datetime.fromtimestamp(int(expires_at), CHINA).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------- the client
@dataclass(frozen=True)
class WechatAnswer:
    status: int
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body) if self.body else {}
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}


CloseResult = Literal["closed", "paid"]


class WechatPayClient:
    def __init__(
        self,
        *,
        mchid: str,
        appid: str,
        keys: Callable[[], WechatPayKeys],
        base_url: str,
        api_base_url: str,
        http: urllib3.PoolManager | None = None,
        clock: Callable[[], float] = time.time,
        timeout: urllib3.Timeout | None = None,
    ) -> None:
        self.mchid, self.appid = mchid, appid
        self._keys = keys
        self.base_url = base_url.rstrip("/")
        self.api_base_url = api_base_url.rstrip("/")
        # A failed connection is retried once (nothing was sent); the rest is decided below. Worst case
        # 2 + 2 + 6 s, inside the API function's 15 s.
        self._http = http or urllib3.PoolManager(
            retries=urllib3.Retry(total=1, connect=1, read=0, status=0, redirect=0)
        )
        self.clock = clock
        self._timeout = timeout or urllib3.Timeout(connect=2.0, read=6.0)

    @property
    def keys(self) -> WechatPayKeys:
        return self._keys()

    # ------------------------------------------------------------------ transport
    def _call(
        self, method: str, path: str, payload: dict[str, Any] | None = None, *, what: str
    ) -> WechatAnswer:
        keys = self.keys
        url = self.base_url + path
        body = (
            json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
            if payload is not None
            else b""
        )
        split = urlsplit(url)
        signed_url = split.path + (f"?{split.query}" if split.query else "")
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": "photopipe (WeChat Pay API v3)",
            "Authorization": authorization(
                mchid=self.mchid,
                serial_no=keys.merchant_serial_no,
                key=keys.merchant_key,
                method=method,
                url=signed_url,
                body=body,
                now=int(self.clock()),
                nonce=nonce_str(),
            ),
        }
        try:
            resp = self._http.request(method, url, body=body or None, headers=headers, timeout=self._timeout)
        except urllib3.exceptions.HTTPError as e:
            raise TransientError(
                f"{what}: WeChat Pay could not be reached ({type(e).__name__})", code="payment_provider_busy"
            ) from e
        answer = WechatAnswer(status=resp.status, body=resp.data, headers=dict(resp.headers))
        if 200 <= answer.status < 300 and (
            answer.body or "wechatpay-signature" in {k.lower() for k in answer.headers}
        ):
            # An answer without a valid signature is not WeChat Pay's: refuse it.
            try:
                verify_signature(
                    keys, answer.headers, answer.body, now=self.clock(), what=f"answer to {what}"
                )
            except UnauthorizedError as e:
                raise ServiceUnavailableError(
                    f"{what}: the answer failed verification ({e.code}): {e.message}",
                    code="wechat_pay_unverified",
                ) from e
        elif answer.status in _RETRYABLE_STATUS:
            raise TransientError(
                f"{what}: WeChat Pay answered {answer.status} {answer.json().get('code', '')}; try again shortly",
                code="payment_provider_busy",
            )
        return answer

    def _failed(self, answer: WechatAnswer, what: str) -> ServiceUnavailableError:
        detail = answer.json()
        return ServiceUnavailableError(
            f"{what}: WeChat Pay answered {answer.status} {detail.get('code', '')}: {detail.get('message', '')}",
            code="wechat_pay_error",
        )

    # ------------------------------------------------------------------ orders
    def create_order(
        self,
        method: PayMethod,
        *,
        out_trade_no: str,
        description: str,
        amount: int,
        notify_url: str,
        expires_at: float,
        attach: str,
        openid: str | None = None,
    ) -> str:
        """Place the order: Native gives the `code_url` to show as a QR code, JSAPI the `prepay_id`.
        Placing the same out_trade_no again with the same content gives the same answer."""
        payload: dict[str, Any] = {
            "appid": self.appid,
            "mchid": self.mchid,
            "description": description,
            "out_trade_no": out_trade_no,
            "time_expire": time_expire(expires_at),
            "attach": attach,
            "notify_url": notify_url,
            "amount": {"total": amount, "currency": "CNY"},
        }
        if method == PayMethod.JSAPI:
            if not openid:
                raise BadRequestError("a JSAPI order needs the payer's openid", code="openid_required")
            payload["payer"] = {"openid": openid}
        what = f"placing order {out_trade_no}"
        answer = self._call("POST", f"/v3/pay/transactions/{method.value}", payload, what=what)
        field = "code_url" if method == PayMethod.NATIVE else "prepay_id"
        value = answer.json().get(field)
        if answer.status != 200 or not isinstance(value, str) or not value:
            raise self._failed(answer, what)
        return value

    def query(self, out_trade_no: str) -> WechatTransaction | None:
        """The order as WeChat Pay knows it (None: it has never heard of it)."""
        path = f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}?" + urlencode(
            {"mchid": self.mchid}
        )
        what = f"querying order {out_trade_no}"
        answer = self._call("GET", path, what=what)
        if answer.status == 404 or answer.json().get("code") == "ORDER_NOT_EXIST":
            return None
        if answer.status != 200:
            raise self._failed(answer, what)
        try:
            return WechatTransaction.model_validate(answer.json())
        except ValidationError as e:
            raise ServiceUnavailableError(
                f"{what}: WeChat Pay's answer is not a transaction: {e}", code="wechat_pay_error"
            ) from e

    def close(self, out_trade_no: str) -> CloseResult:
        """Close an unpaid order so it can no longer be paid; `paid` when it was paid meanwhile."""
        what = f"closing order {out_trade_no}"
        answer = self._call(
            "POST",
            f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}/close",
            {"mchid": self.mchid},
            what=what,
        )
        if answer.status in (200, 204):
            return "closed"
        code = answer.json().get("code")
        if code in ("ORDERPAID", "ORDER_PAID"):
            return "paid"
        if code in ("ORDER_CLOSED", "ORDERCLOSED", "ORDER_NOT_EXIST", "ORDERNOTEXIST"):
            return "closed"
        raise self._failed(answer, what)

    def jsapi_parameters(self, prepay_id: str) -> dict[str, str]:
        """What `wx.requestPayment` takes: signed over `appId\\ntimeStamp\\nnonceStr\\npackage\\n`."""
        params = {
            "appId": self.appid,
            "timeStamp": str(int(self.clock())),
            "nonceStr": nonce_str(),
            "package": f"prepay_id={prepay_id}",
            "signType": "RSA",
        }
        message = f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
        params["paySign"] = rsa_sign(self.keys.merchant_key, message.encode())
        return params

    # ------------------------------------------------------------------ notify
    def open_notification(self, headers: Mapping[str, str], body: bytes) -> tuple[WechatNotification, bytes]:
        """Verify a notify over its raw bytes, then decrypt its resource: (envelope, plaintext)."""
        keys = self.keys
        verify_signature(keys, headers, body, now=self.clock())
        try:
            notification = WechatNotification.model_validate_json(body)
        except ValidationError as e:
            raise BadRequestError(
                f"the notify is signed but is not a WeChat Pay notification: {e}", code="bad_notify"
            ) from e
        resource = notification.resource
        if resource.algorithm != "AEAD_AES_256_GCM":
            raise BadRequestError(f"the notify's resource uses {resource.algorithm!r}", code="bad_notify")
        plaintext = decrypt_resource(
            keys.apiv3_key,
            ciphertext=resource.ciphertext,
            nonce=resource.nonce,
            associated_data=resource.associated_data,
        )
        return notification, plaintext

    # ------------------------------------------------------------------ mini-program login
    def code2session(self, code: str) -> str:
        """The openid behind a `wx.login()` code (`session_key` is dropped: nothing here needs it)."""
        secret = self.keys.miniprogram_secret
        if not secret:
            raise ServiceUnavailableError(
                "WeChat login is not configured: put the mini-program's AppSecret in the WeChat Pay secret "
                "(miniprogram_secret)",
                code="wechat_login_unavailable",
            )
        query = urlencode(
            {"appid": self.appid, "secret": secret, "js_code": code, "grant_type": "authorization_code"}
        )
        try:
            resp = self._http.request(
                "GET", f"{self.api_base_url}/sns/jscode2session?{query}", timeout=self._timeout
            )
        except urllib3.exceptions.HTTPError as e:
            # `from None`: urllib3's message quotes the URL, and this URL carries the AppSecret.
            raise TransientError(
                f"WeChat login could not be reached ({type(e).__name__})", code="wechat_busy"
            ) from None
        try:
            answer = json.loads(resp.data or b"{}")
        except json.JSONDecodeError:
            answer = {}
        errcode = int(answer.get("errcode") or 0) if isinstance(answer, dict) else -1
        if resp.status >= 500 or errcode in (-1, 45011):
            raise TransientError("WeChat login is busy; try again shortly", code="wechat_busy")
        if errcode in (40029, 40163, 40226):
            raise BadRequestError(
                f"WeChat refused the login code ({errcode} {answer.get('errmsg', '')}): call wx.login() again "
                "and send the new code",
                code="invalid_wechat_code",
            )
        openid = answer.get("openid") if isinstance(answer, dict) else None
        if resp.status != 200 or errcode or not isinstance(openid, str) or not openid:
            raise ServiceUnavailableError(
                f"WeChat login failed ({resp.status}, errcode {errcode}): check WECHAT_APPID and miniprogram_secret",
                code="wechat_login_failed",
            )
        return openid
