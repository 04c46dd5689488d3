"""`photopipe upload`'s engine: hash every photo, decide what to send, send it in parallel.

1. Every photo is hashed (SHA-256 of the file on disk), on `jobs` threads.
2. In the order the photos were found: a file whose hash an earlier file of this run has is a duplicate
   and is skipped; one the journal says already arrived on this server for this account is skipped.
3. The rest are sent on `jobs` threads: compressed first with `--compress`; then the cache pre-check
   (`POST /classify/check-cache` with the SHA-256 of the bytes to send); then `POST /uploads`; then the
   presigned POST, streamed from disk; then the journal entry.

What a pre-check hit means: the service already knows this picture's category (its classification cache
is shared and keyed by content), so classifying it will cost no model call, and the outcome says which
category. It does not mean the photo is in the user's library (the cache knows nothing about owners), so
the photo is still sent: skipping it would lose it. Duplicates are skipped by the hash check of step 2.

No output here: a `Reporter` draws progress (or nothing)."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Protocol

from photopipe_cli.api import Api
from photopipe_cli.errors import CliError, NotLoggedIn
from photopipe_cli.journal import Journal
from photopipe_cli.photos import Found
from photopipe_cli.ui import human_bytes

HASH_BLOCK = 1 << 20


class Status(StrEnum):
    UPLOADED = "uploaded"
    ALREADY_UPLOADED = "already_uploaded"  # the journal says it arrived before
    DUPLICATE = "duplicate"  # same bytes as an earlier file of this run
    NOT_AN_IMAGE = "not_an_image"
    FAILED = "failed"


@dataclass
class Outcome:
    path: str
    status: Status
    explicit: bool = False
    size: int = 0
    sha256: str | None = None
    image_id: str | None = None
    bytes_sent: int = 0
    reason: str | None = None
    duplicate_of: str | None = None
    known_category: dict[str, Any] | None = None
    compression: dict[str, Any] | None = None
    # filled in by `--wait`: the states the photo went through, and its final record's reason
    states: list[str] = field(default_factory=list)
    final_state: str | None = None

    @property
    def failed(self) -> bool:
        """Counts against the exit code: a failure, or a file named on the command line that is not a
        photo (one found by walking a directory is only skipped)."""
        return self.status is Status.FAILED or (self.status is Status.NOT_AN_IMAGE and self.explicit)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "path": self.path,
            "status": self.status.value,
            "size": self.size,
            "sha256": self.sha256,
            "image_id": self.image_id,
            "bytes_sent": self.bytes_sent,
        }
        for name in ("reason", "duplicate_of", "known_category", "compression", "final_state"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.states:
            data["states"] = self.states
        return data


@dataclass(frozen=True)
class UploadOptions:
    jobs: int = 4
    compress: bool = False
    max_side: int = 1920
    max_kb: int = 400
    force: bool = False  # send even what the journal says arrived


class Reporter(Protocol):
    def begin(self, files: int, total_bytes: int) -> None: ...
    def started(self, key: int, name: str, size: int) -> None: ...
    def advance(self, key: int, sent: int) -> None: ...
    def resized(self, key: int, old: int, new: int) -> None: ...
    def finished(self, outcome: Outcome, key: int | None = None) -> None: ...
    def end(self) -> None: ...


class QuietReporter:
    """Draws nothing (`--json`)."""

    def begin(self, files: int, total_bytes: int) -> None:
        pass

    def started(self, key: int, name: str, size: int) -> None:
        pass

    def advance(self, key: int, sent: int) -> None:
        pass

    def resized(self, key: int, old: int, new: int) -> None:
        pass

    def finished(self, outcome: Outcome, key: int | None = None) -> None:
        pass

    def end(self) -> None:
        pass


class Interrupted(Exception):
    """Raised inside a transfer when the run is being stopped (Ctrl+C)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class Uploader:
    def __init__(
        self,
        api: Api,
        journal: Journal,
        *,
        user_id: str,
        options: UploadOptions,
        max_upload_bytes: int | None,
        reporter: Reporter,
    ) -> None:
        self.api = api
        self.journal = journal
        self.user_id = user_id
        self.options = options
        self.max_upload_bytes = max_upload_bytes
        self.reporter = reporter
        self.stop = threading.Event()

    def run(self, found: list[Found]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(found)
        photos = [i for i, f in enumerate(found) if f.is_photo]
        for i, f in enumerate(found):
            if not f.is_photo:
                status = Status.FAILED if f.problem == "no such file or directory" else Status.NOT_AN_IMAGE
                outcomes[i] = Outcome(str(f.path), status, f.explicit, f.size, reason=f.problem)
        with ThreadPoolExecutor(max_workers=self.options.jobs, thread_name_prefix="upload") as pool:
            hashes = self._hash_all(pool, found, photos, outcomes)
            to_send = self._decide(found, photos, hashes, outcomes)
            for i in range(len(found)):
                if outcomes[i] is not None and i not in to_send:
                    self.reporter.finished(outcomes[i])  # type: ignore[arg-type]
            self.reporter.begin(len(to_send), sum(found[i].size for i in to_send))
            try:
                self._send_all(pool, found, to_send, hashes, outcomes)
            finally:
                self.reporter.end()
        return [o for o in outcomes if o is not None]

    # ---------------------------------------------------------------------------------- phases
    def _hash_all(
        self, pool: ThreadPoolExecutor, found: list[Found], photos: list[int], outcomes: list[Outcome | None]
    ) -> dict[int, str]:
        futures = {i: pool.submit(sha256_file, found[i].path) for i in photos}
        hashes: dict[int, str] = {}
        for i, future in futures.items():
            try:
                hashes[i] = future.result()
            except OSError as e:
                outcomes[i] = Outcome(
                    str(found[i].path), Status.FAILED, found[i].explicit, found[i].size, reason=str(e)
                )
        return hashes

    def _decide(
        self, found: list[Found], photos: list[int], hashes: dict[int, str], outcomes: list[Outcome | None]
    ) -> list[int]:
        first_with: dict[str, int] = {}
        to_send = []
        server = self.api.server.url
        for i in photos:
            if i not in hashes:
                continue
            f, sha = found[i], hashes[i]
            if sha in first_with:
                outcomes[i] = Outcome(
                    str(f.path),
                    Status.DUPLICATE,
                    f.explicit,
                    f.size,
                    sha,
                    duplicate_of=str(found[first_with[sha]].path),
                    reason=f"same content as {found[first_with[sha]].path}",
                )
                continue
            first_with[sha] = i
            arrived = None if self.options.force else self.journal.arrived(server, self.user_id, sha)
            if arrived is not None:
                outcomes[i] = Outcome(
                    str(f.path),
                    Status.ALREADY_UPLOADED,
                    f.explicit,
                    f.size,
                    sha,
                    image_id=arrived.image_id,
                    reason=f"already uploaded on {arrived.uploaded_at[:10]} as {arrived.image_id}",
                )
                continue
            to_send.append(i)
        return to_send

    def _send_all(
        self,
        pool: ThreadPoolExecutor,
        found: list[Found],
        to_send: list[int],
        hashes: dict[int, str],
        outcomes: list[Outcome | None],
    ) -> None:
        pending: dict[Future[Outcome], int] = {
            pool.submit(self._send_one, i, found[i], hashes[i]): i for i in to_send
        }
        try:
            while pending:
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    i = pending.pop(future)
                    outcome = future.result()  # NotLoggedIn propagates: every other upload would fail too
                    outcomes[i] = outcome
                    self.reporter.finished(outcome, i)
        except BaseException:
            self.stop.set()
            for future in pending:
                future.cancel()
            raise

    def _send_one(self, key: int, f: Found, sha: str) -> Outcome:
        outcome = Outcome(str(f.path), Status.FAILED, f.explicit, f.size, sha)
        if self.stop.is_set():
            outcome.reason = "interrupted"
            return outcome
        assert f.format is not None
        self.reporter.started(key, f.path.name, f.size)
        try:
            self._transfer(key, f, sha, outcome)
        except NotLoggedIn:
            raise
        except Interrupted:
            outcome.status, outcome.reason = Status.FAILED, "interrupted"
        except CliError as e:
            outcome.status, outcome.reason = Status.FAILED, e.message
        except OSError as e:
            outcome.status, outcome.reason = Status.FAILED, f"cannot read it ({e.strerror or e})"
        return outcome

    def _transfer(self, key: int, f: Found, sha: str, outcome: Outcome) -> None:
        assert f.format is not None
        content_type, filename = f.format.mime_type, f.path.name
        payload_sha, size = sha, f.size
        body: IO[bytes]
        if self.options.compress:
            from photopipe_cli.compression import compress

            result = compress(f.path.read_bytes(), max_side=self.options.max_side, max_kb=self.options.max_kb)
            if not result.kept_original:
                content_type, filename = "image/jpeg", f"{f.path.stem}.jpg"
                payload_sha = hashlib.sha256(result.data).hexdigest()
            outcome.compression = result.describe()
            self.reporter.resized(key, size, len(result.data))
            size = len(result.data)
            body = io.BytesIO(result.data)
        else:
            body = f.path.open("rb")
        with body:
            if self.max_upload_bytes is not None and size > self.max_upload_bytes:
                raise CliError(
                    f"{human_bytes(size)} is over the server's {human_bytes(self.max_upload_bytes)} limit; "
                    "try --compress"
                )
            check = self.api.post("/classify/check-cache", {"sha256": payload_sha})
            if check.get("hit") and check.get("classification"):
                outcome.known_category = {**check["classification"], "source": check.get("source")}
            created = self.api.post(
                "/uploads",
                {"filename": filename, "content_type": content_type, "size": size, "sha256": payload_sha},
            )
            outcome.image_id = created["image_id"]
            self.api.post_form(
                created["upload"]["url"],
                created["upload"]["fields"],
                body,
                filename=filename,
                content_type=content_type,
                on_bytes=self._counter(key, outcome),
            )
        outcome.status = Status.UPLOADED
        outcome.bytes_sent = size
        self.journal.record(
            self.api.server.url,
            self.user_id,
            sha256=sha,
            image_id=outcome.image_id or "",
            path=str(f.path.resolve()),
            bytes_sent=size,
            compressed=self.options.compress,
        )

    def _counter(self, key: int, outcome: Outcome) -> Callable[[int], None]:
        def on_bytes(n: int) -> None:
            if self.stop.is_set():
                raise Interrupted
            self.reporter.advance(key, n)

        return on_bytes
