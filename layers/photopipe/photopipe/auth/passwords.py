"""scrypt password hashes (memory-hard, standard library). Encoded as
`scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>` so parameters can be raised later without a migration."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class PasswordHasher:
    # n=2^15, r=8: 32 MiB and ~60 ms per hash on a Lambda core - the OWASP floor is n=2^17/r=8/p=1 for
    # servers; Lambda's memory budget is why we use 2^15, with p=1. Raise log2_n as budgets allow.
    log2_n: int = 15
    r: int = 8
    p: int = 1
    dklen: int = 32

    def hash(self, password: str) -> str:
        salt = secrets.token_bytes(16)
        digest = self._derive(password, salt, self.log2_n, self.r, self.p, self.dklen)
        return f"scrypt${self.log2_n}${self.r}${self.p}${_b64(salt)}${_b64(digest)}"

    def verify(self, password: str, encoded: str) -> bool:
        try:
            scheme, log2_n, r, p, salt, digest = encoded.split("$")
            if scheme != "scrypt":
                return False
            expected = _unb64(digest)
            actual = self._derive(password, _unb64(salt), int(log2_n), int(r), int(p), len(expected))
        except ValueError:
            return False
        return hmac.compare_digest(actual, expected)

    def burn(self, password: str) -> None:
        """Spend the same time as a verify when the user does not exist (no user enumeration by timing)."""
        self._derive(password, b"\0" * 16, self.log2_n, self.r, self.p, self.dklen)

    @staticmethod
    def _derive(password: str, salt: bytes, log2_n: int, r: int, p: int, dklen: int) -> bytes:
        n = 1 << log2_n
        return hashlib.scrypt(
            password.encode(), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=n * r * 128 * 2 + (1 << 20)
        )
