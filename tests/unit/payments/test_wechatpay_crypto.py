"""The WeChat Pay API v3 signatures and the notify's AES-256-GCM resource, checked against messages built
here straight from WeChat Pay's documented formats with `cryptography` (not with the code under test):

- an answer or notify is signed SHA256withRSA over `timestamp\\nnonce\\nbody\\n`, the exact body bytes;
- a request's Authorization signs `METHOD\\nURL\\ntimestamp\\nnonce\\nbody\\n`;
- the resource is AEAD_AES_256_GCM with the 32-byte APIv3 key, the nonce and the associated data;
- JSAPI's paySign signs `appId\\ntimeStamp\\nnonceStr\\npackage\\n`."""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from photopipe.adapters.wechatpay import (
    WechatPayClient,
    authorization,
    decrypt_resource,
    parse_keys,
    time_expire,
    verify_signature,
)
from photopipe.errors import PhotopipeError, UnauthorizedError

APIV3 = "0123456789abcdef0123456789abcdef"
PUB_ID = "PUB_KEY_ID_0119000001092026120100000000000"


@pytest.fixture(scope="module")
def merchant() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def platform() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _document(merchant: rsa.RSAPrivateKey, platform: rsa.RSAPrivateKey, **extra: object) -> str:
    return json.dumps(
        {
            "merchant_private_key": _pem(merchant),
            "merchant_serial_no": "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
            "apiv3_key": APIV3,
            "wechatpay_public_key_id": PUB_ID,
            "wechatpay_public_key": _public_pem(platform),
            **extra,
        }
    )


def _signed(key: rsa.RSAPrivateKey, body: bytes, *, ts: int, nonce: str = "n0nce") -> dict[str, str]:
    message = f"{ts}\n{nonce}\n".encode() + body + b"\n"
    signature = base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()
    return {
        "Wechatpay-Timestamp": str(ts),
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Serial": PUB_ID,
        "Wechatpay-Signature": signature,
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }


BODY = '{"id":"EV-1","event_type":"TRANSACTION.SUCCESS","summary":"支付成功"}'.encode()


# ------------------------------------------------------------------ signatures of answers and notifies
def test_a_signature_made_with_wechat_pays_key_over_the_exact_bytes_verifies(
    merchant: rsa.RSAPrivateKey, platform: rsa.RSAPrivateKey
) -> None:
    keys = parse_keys(_document(merchant, platform))
    now = int(time.time())

    verify_signature(keys, _signed(platform, BODY, ts=now), BODY, now=now)  # no exception
    # header names are case-insensitive (API Gateway lowercases them)
    lowered = {k.lower(): v for k, v in _signed(platform, BODY, ts=now).items()}
    verify_signature(keys, lowered, BODY, now=now)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: b.replace(b"EV-1", b"EV-2"),  # another event
        lambda b: b + b" ",  # one byte more: re-serialised JSON would not verify either
        lambda b: json.dumps(json.loads(b)).encode(),  # same JSON, different bytes (escaped 支付成功)
    ],
    ids=["changed", "appended", "re-serialised"],
)
def test_a_body_that_is_not_the_one_signed_is_refused(
    merchant: rsa.RSAPrivateKey, platform: rsa.RSAPrivateKey, tamper: object
) -> None:
    keys = parse_keys(_document(merchant, platform))
    now = int(time.time())
    headers = _signed(platform, BODY, ts=now)

    with pytest.raises(UnauthorizedError) as e:
        verify_signature(keys, headers, tamper(BODY), now=now)  # type: ignore[operator]
    assert e.value.code == "invalid_signature"


def test_a_signature_by_another_key_is_refused(
    merchant: rsa.RSAPrivateKey, platform: rsa.RSAPrivateKey
) -> None:
    keys = parse_keys(_document(merchant, platform))
    now = int(time.time())

    with pytest.raises(UnauthorizedError) as e:
        verify_signature(keys, _signed(merchant, BODY, ts=now), BODY, now=now)  # the merchant's own key
    assert e.value.code == "invalid_signature"


@pytest.mark.parametrize("offset", [-301, 301, -3600])
def test_a_timestamp_more_than_five_minutes_off_is_refused(
    merchant: rsa.RSAPrivateKey, platform: rsa.RSAPrivateKey, offset: int
) -> None:
    keys = parse_keys(_document(merchant, platform))
    now = int(time.time())
    headers = _signed(platform, BODY, ts=now + offset)  # correctly signed, but stale (or from the future)

    with pytest.raises(UnauthorizedError) as e:
        verify_signature(keys, headers, BODY, now=now)
    assert e.value.code == "stale_timestamp"


def test_within_five_minutes_is_accepted(merchant: rsa.RSAPrivateKey, platform: rsa.RSAPrivateKey) -> None:
    keys = parse_keys(_document(merchant, platform))
    now = int(time.time())

    verify_signature(keys, _signed(platform, BODY, ts=now - 299), BODY, now=now)


def test_an_unknown_serial_missing_headers_and_another_algorithm_are_refused(
    merchant: rsa.RSAPrivateKey, platform: rsa.RSAPrivateKey
) -> None:
    keys = parse_keys(_document(merchant, platform))
    now = int(time.time())
    good = _signed(platform, BODY, ts=now)

    cases = {
        "unknown_serial": {**good, "Wechatpay-Serial": "PUB_KEY_ID_SOMEONE_ELSE"},
        "missing_signature": {k: v for k, v in good.items() if k != "Wechatpay-Signature"},
        "invalid_signature": {**good, "Wechatpay-Signature-Type": "WECHATPAY2-SM2-WITH-SM3"},
    }
    for code, headers in cases.items():
        with pytest.raises(UnauthorizedError) as e:
            verify_signature(keys, headers, BODY, now=now)
        assert e.value.code == code
    # WeChat Pay's own probe, which merchants must refuse
    probe = {**good, "Wechatpay-Signature": "WECHATPAY/SIGNTEST/" + good["Wechatpay-Signature"]}
    with pytest.raises(UnauthorizedError):
        verify_signature(keys, probe, BODY, now=now)


def test_platform_certificate_mode_verifies_by_certificate_serial(
    merchant: rsa.RSAPrivateKey, platform: rsa.RSAPrivateKey
) -> None:
    # GIVEN the secret holds a platform certificate (no public key id)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(platform.public_key())
        .serial_number(0x5157F09EFDC096DE15EBE81A47057A7232F1B8E1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(platform, hashes.SHA256())
    )
    doc = json.loads(_document(merchant, platform))
    del doc["wechatpay_public_key_id"], doc["wechatpay_public_key"]
    doc["platform_certificates"] = [cert.public_bytes(serialization.Encoding.PEM).decode()]
    keys = parse_keys(json.dumps(doc))
    ts = int(time.time())
    headers = {
        **_signed(platform, BODY, ts=ts),
        "Wechatpay-Serial": "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
    }

    # THEN a notify naming the certificate's serial verifies
    verify_signature(keys, headers, BODY, now=ts)


# ------------------------------------------------------------------ the encrypted resource
def test_the_resource_decrypts_with_the_apiv3_key_and_its_associated_data() -> None:
    plaintext = b'{"out_trade_no":"PPD1","trade_state":"SUCCESS","amount":{"total":100}}'
    ciphertext = base64.b64encode(AESGCM(APIV3.encode()).encrypt(b"abcdefghijkl", plaintext, b"transaction"))

    got = decrypt_resource(
        APIV3.encode(), ciphertext=ciphertext.decode(), nonce="abcdefghijkl", associated_data="transaction"
    )

    assert got == plaintext
    for wrong in (
        {"associated_data": "certificate"},
        {"nonce": "abcdefghijkm"},
        {"key": b"x" * 32},
    ):
        with pytest.raises(UnauthorizedError) as e:
            decrypt_resource(
                wrong.get("key", APIV3.encode()),  # type: ignore[arg-type]
                ciphertext=ciphertext.decode(),
                nonce=str(wrong.get("nonce", "abcdefghijkl")),
                associated_data=str(wrong.get("associated_data", "transaction")),
            )
        assert e.value.code == "undecryptable"


# ------------------------------------------------------------------ what photopipe signs
def test_the_authorization_header_is_verifiable_with_the_merchant_public_key(
    merchant: rsa.RSAPrivateKey,
) -> None:
    body = b'{"mchid":"1900000109"}'
    header = authorization(
        mchid="1900000109",
        serial_no="SERIAL1",
        key=merchant,
        method="POST",
        url="/v3/pay/transactions/out-trade-no/PPD1/close",
        body=body,
        now=1_795_314_600,
        nonce="593BEC0C930BF1AFEB40B4A08C8FB242",
    )

    scheme, _, params = header.partition(" ")
    fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
    assert scheme == "WECHATPAY2-SHA256-RSA2048"
    assert fields["mchid"] == "1900000109"
    assert fields["serial_no"] == "SERIAL1"
    assert fields["timestamp"] == "1795314600"
    message = (
        b"POST\n/v3/pay/transactions/out-trade-no/PPD1/close\n1795314600\n593BEC0C930BF1AFEB40B4A08C8FB242\n"
        + body
        + b"\n"
    )
    merchant.public_key().verify(
        base64.b64decode(fields["signature"]), message, padding.PKCS1v15(), hashes.SHA256()
    )


def test_jsapi_pay_sign_is_verifiable(merchant: rsa.RSAPrivateKey, platform: rsa.RSAPrivateKey) -> None:
    keys = parse_keys(_document(merchant, platform))
    client = WechatPayClient(
        mchid="1900000109",
        appid="wx8888888888888888",
        keys=lambda: keys,
        base_url="http://127.0.0.1:9",
        api_base_url="http://127.0.0.1:9",
    )

    params = client.jsapi_parameters("wx201410272009395522657a690389285100")

    assert params["package"] == "prepay_id=wx201410272009395522657a690389285100"
    assert params["signType"] == "RSA"
    message = f"wx8888888888888888\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    merchant.public_key().verify(
        base64.b64decode(params["paySign"]), message.encode(), padding.PKCS1v15(), hashes.SHA256()
    )


def test_time_expire_is_china_time_in_rfc3339() -> None:
    # 1795314600 is 2026-11-22 02:30:00 UTC
    assert time_expire(1_795_314_600) == "2026-11-22T10:30:00+08:00"


# ------------------------------------------------------------------ the secret document
@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"apiv3_key": "short"}, "32 bytes"),
        (
            {"merchant_private_key": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----"},
            "PEM",
        ),
        (
            {"wechatpay_public_key": None, "wechatpay_public_key_id": None},
            "no (unexpired) WeChat Pay public key",
        ),
        ({"merchant_serial_no": ""}, "lacks merchant_serial_no"),
    ],
)
def test_a_bad_secret_document_is_named_without_quoting_it(
    merchant: rsa.RSAPrivateKey, platform: rsa.RSAPrivateKey, change: dict[str, object], says: str
) -> None:
    doc = {k: v for k, v in json.loads(_document(merchant, platform)).items()}
    doc.update(change)
    doc = {k: v for k, v in doc.items() if v is not None}

    with pytest.raises(PhotopipeError) as e:
        parse_keys(json.dumps(doc))

    assert e.value.code == "payments_unavailable"
    assert e.value.status == 503
    assert says in e.value.message
    assert "WECHAT_PAY_SECRET_ID" in e.value.message
    assert "BEGIN" not in e.value.message
    assert APIV3 not in e.value.message


def test_parsed_keys_never_print_their_material(
    merchant: rsa.RSAPrivateKey, platform: rsa.RSAPrivateKey
) -> None:
    keys = parse_keys(_document(merchant, platform))
    text = repr(keys) + str(keys)

    assert APIV3 not in text
    assert "PRIVATE" not in text
