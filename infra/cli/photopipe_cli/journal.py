"""The local upload journal: which photos already arrived, so a rerun of `upload` skips them.

An entry is written only once the storage has accepted the whole file, keyed by server, account and the
SHA-256 of the file as it is on disk (before any `--compress`): renaming or moving a photo does not make
it new, and an interrupted upload is sent again. `photopipe delete` removes the entries of what it
deletes. The journal also remembers which enhancement job belongs to which photo, for
`download ID --what enhanced`. SQLite (standard library) so that parallel uploads and two `photopipe`
processes can write at once."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from photopipe_cli.errors import CliError
from photopipe_cli.settings import journal_file

SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    server TEXT NOT NULL,
    user_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    image_id TEXT NOT NULL,
    path TEXT NOT NULL,
    bytes_sent INTEGER NOT NULL,
    compressed INTEGER NOT NULL DEFAULT 0,
    uploaded_at TEXT NOT NULL,
    PRIMARY KEY (server, user_id, sha256)
);
CREATE INDEX IF NOT EXISTS uploads_by_image ON uploads (server, user_id, image_id);
CREATE TABLE IF NOT EXISTS jobs (
    server TEXT NOT NULL,
    user_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    image_id TEXT NOT NULL,
    batch_id TEXT,
    submitted_at TEXT NOT NULL,
    PRIMARY KEY (server, user_id, job_id)
);
CREATE INDEX IF NOT EXISTS jobs_by_image ON jobs (server, user_id, image_id, submitted_at);
"""


@dataclass(frozen=True)
class Arrived:
    sha256: str
    image_id: str
    path: str
    bytes_sent: int
    uploaded_at: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise CliError(
                f"cannot open the upload journal {path}: {e}",
                hint="Set PHOTOPIPE_STATE_DIR to a writable directory.",
            ) from e
        self._lock = threading.Lock()

    @classmethod
    def open_default(cls) -> Journal:
        return cls(journal_file())

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ uploads
    def arrived(self, server: str, user_id: str, sha256: str) -> Arrived | None:
        with self._lock:
            row = self._db.execute(
                "SELECT sha256, image_id, path, bytes_sent, uploaded_at FROM uploads "
                "WHERE server = ? AND user_id = ? AND sha256 = ?",
                (server, user_id, sha256),
            ).fetchone()
        return Arrived(*row) if row else None

    def record(
        self,
        server: str,
        user_id: str,
        *,
        sha256: str,
        image_id: str,
        path: str,
        bytes_sent: int,
        compressed: bool = False,
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (server, user_id, sha256, image_id, path, bytes_sent, int(compressed), _now()),
            )

    def forget_images(self, server: str, user_id: str, image_ids: Iterable[str]) -> int:
        ids = list(image_ids)
        with self._lock:
            removed = 0
            for image_id in ids:
                cursor = self._db.execute(
                    "DELETE FROM uploads WHERE server = ? AND user_id = ? AND image_id = ?",
                    (server, user_id, image_id),
                )
                removed += cursor.rowcount
                self._db.execute(
                    "DELETE FROM jobs WHERE server = ? AND user_id = ? AND image_id = ?",
                    (server, user_id, image_id),
                )
        return removed

    def uploads(self, server: str, user_id: str) -> int:
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM uploads WHERE server = ? AND user_id = ?", (server, user_id)
            ).fetchone()
        return int(count)

    # --------------------------------------------------------------------------------------- jobs
    def remember_job(
        self, server: str, user_id: str, *, job_id: str, image_id: str, batch_id: str | None = None
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?)",
                (server, user_id, job_id, image_id, batch_id, _now()),
            )

    def latest_job(self, server: str, user_id: str, image_id: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT job_id FROM jobs WHERE server = ? AND user_id = ? AND image_id = ? "
                "ORDER BY submitted_at DESC, rowid DESC LIMIT 1",
                (server, user_id, image_id),
            ).fetchone()
        return str(row[0]) if row else None
