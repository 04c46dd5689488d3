"""The `photopipe` command against the local stack, as a person uses it (each command a real process):
register → login → upload a folder of 12 files (a duplicate, two that are not photos) → list → show →
download → delete, with the exit codes, stdout/stderr split and `--json` documents the README promises.

Live updates (`upload --wait`) need the WebSocket API, which the local stack does not serve yet: the
command must then fail clearly, before sending anything."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.e2e.conftest import LiveStack, photo_jpeg

pytestmark = pytest.mark.e2e

PASSWORD = "correct-horse-battery"


@dataclass
class Done:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Cli = Callable[..., Done]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-home")


@pytest.fixture(scope="module")
def cli(live: LiveStack, home: Path) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOPIPE_")}
    env |= {
        "PHOTOPIPE_CONFIG_DIR": str(home / "config"),
        "PHOTOPIPE_STATE_DIR": str(home / "state"),
        "PHOTOPIPE_API_URL": live.api_url,
        "NO_COLOR": "1",
    }

    def run(*args: str, stdin: str = "", extra_env: dict[str, str] | None = None) -> Done:
        done = subprocess.run(
            [sys.executable, "-m", "photopipe_cli.main", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env | (extra_env or {}),
            cwd=home,
            timeout=300,
            check=False,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return Done(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture(scope="module")
def album(home: Path) -> Path:
    """12 files: 9 photos (one of them a PNG, one turned by EXIF), a copy of one in a subfolder, a text
    file named like a photo, and a file that starts like a PNG but is not one."""
    folder = home / "Pictures"
    (folder / "2026" / "copies").mkdir(parents=True)
    for i in range(7):
        (folder / "2026" / f"IMG_{i:04d}.jpg").write_bytes(photo_jpeg((640 + 16 * i, 480)))
    (folder / "turned.jpg").write_bytes(photo_jpeg((800, 600), orientation=6))
    buf = io.BytesIO()
    Image.open(io.BytesIO(photo_jpeg((500, 400)))).save(buf, "PNG")
    (folder / "screenshot.png").write_bytes(buf.getvalue())
    (folder / "2026" / "copies" / "IMG_0003 (copy).jpg").write_bytes(
        (folder / "2026" / "IMG_0003.jpg").read_bytes()
    )
    (folder / "notes.jpg").write_text("Packing list: passport, charger, sunscreen\n")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"garbage" * 50)
    assert sum(1 for p in folder.rglob("*") if p.is_file()) == 12
    return folder


def test_the_cli_from_register_to_delete(cli: Cli, live: LiveStack, home: Path, album: Path) -> None:
    # --- register, and the token kept for this server only, readable by its owner only
    registered = cli(
        "register",
        "--username",
        "grace",
        "--email",
        "grace@example.com",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert registered.code == 0, registered.err
    assert registered.out == ""
    assert f"registered and logged in to {live.api_url}" in registered.err
    credentials = home / "config" / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert list(json.loads(credentials.read_text())["servers"]) == [live.api_url]

    # --- logged out, the commands say so; a wrong password is a plain failure; the right one logs in
    assert cli("logout").code == 0
    listed = cli("list")
    assert (listed.code, listed.out) == (3, "")
    assert "not logged in" in listed.err
    wrong = cli("login", "grace", "--password-stdin", stdin="not-the-password\n")
    assert wrong.code == 1
    assert "error: wrong username/email or password" in wrong.err
    login = cli("login", "grace", "--password-stdin", "--json", stdin=PASSWORD + "\n")
    assert login.code == 0, login.err
    assert login.json()["user"]["username"] == "grace"
    assert "token" not in login.out  # the token is not printed

    # --- upload the folder: 10 sent, the copy skipped by its hash, the text file skipped with its reason
    uploaded = cli("upload", str(album), "--jobs", "4")
    assert uploaded.code == 0, uploaded.err
    assert uploaded.out == ""
    err = uploaded.err
    assert (
        f"skipped   {album / '2026/copies/IMG_0003 (copy).jpg'}: duplicate, same content as {album / '2026/IMG_0003.jpg'}"
        in err
    )
    assert f"skipped   {album / 'notes.jpg'}: not an image: it looks like plain text" in err
    assert err.count("uploaded  ") == 10
    assert "10 uploaded (" in err
    assert "1 duplicate" in err
    assert "1 not an image" in err

    # --- a rerun sends nothing: the journal knows what arrived
    rerun = cli("upload", str(album), "--json")
    assert rerun.code == 0, rerun.err
    report = rerun.json()
    statuses = {Path(f["path"]).name: f["status"] for f in report["files"]}
    assert statuses["notes.jpg"] == "not_an_image"
    assert statuses["IMG_0003 (copy).jpg"] == "duplicate"
    assert sorted(s for s in statuses.values() if s == "already_uploaded") == ["already_uploaded"] * 10
    assert report["summary"]["uploaded"] == report["summary"]["bytes_sent"] == 0
    assert report["summary"]["bytes_not_sent"] == sum(
        p.stat().st_size
        for p in album.rglob("*")
        if p.suffix in (".jpg", ".png") and p.name not in ("notes.jpg",)
    )
    assert rerun.err == ""  # --json: no progress, no per-file lines

    # --- the library lists the 10, as a table and as JSON
    live.wait_idle(120)
    table = cli("list", "--limit", "50")
    assert table.code == 0
    assert table.err.strip() == "10 photos"
    rows = [line.split("\t") for line in table.out.splitlines()]
    assert len(rows) == 10
    assert all(len(row) == 6 for row in rows)
    listing = cli("list", "--all", "--json").json()
    assert listing["count"] == 10
    assert listing["next_cursor"] is None
    by_name = {item["filename"]: item for item in listing["items"]}
    assert set(by_name) == {
        *(f"IMG_{i:04d}.jpg" for i in range(7)),
        "turned.jpg",
        "screenshot.png",
        "broken.png",
    }
    assert by_name["broken.png"]["state"] == "rejected"
    assert {by_name[n]["state"] for n in by_name if n != "broken.png"} == {"classification_skipped"}
    rejected = cli("list", "--state", "rejected", "--json").json()
    assert [i["filename"] for i in rejected["items"]] == ["broken.png"]

    # --- show: the rejected one says why; the turned one is upright
    broken = by_name["broken.png"]["image_id"]
    shown = cli("show", broken)
    assert shown.code == 0
    assert "state     rejected" in shown.out
    assert "reason    corrupt: the file is marked as PNG but cannot be read" in shown.out
    turned = cli("show", by_name["turned.jpg"]["image_id"], "--json").json()
    assert (turned["width"], turned["height"]) == (600, 800)
    missing = cli("show", "0" * 32)
    assert (missing.code, missing.out) == (4, "")
    assert "error:" in missing.err

    # --- download: the original as it was sent, and a rendition
    some = by_name["IMG_0002.jpg"]["image_id"]
    got = cli("download", some, "-o", "downloads/")
    assert got.code == 0, got.err
    assert (home / "downloads" / "IMG_0002.jpg").read_bytes() == (
        album / "2026" / "IMG_0002.jpg"
    ).read_bytes()
    thumb = cli("download", some, "--what", "thumbnail", "-o", "downloads/", "--json")
    assert thumb.code == 0, thumb.err
    assert thumb.json()["path"] == "downloads/IMG_0002.thumb.webp"
    assert Image.open(home / "downloads" / "IMG_0002.thumb.webp").format == "WEBP"
    again = cli("download", some, "-o", "downloads/")
    assert again.code == 1
    assert "already exists" in again.err
    no_preview = cli("download", broken, "--what", "preview")
    assert no_preview.code == 4
    assert "has no preview (it is rejected)" in no_preview.err

    # --- delete: asks first (and refuses with no terminal), one or several, 4 for an unknown id
    refused = cli("delete", broken)
    assert refused.code == 2
    assert "pass --yes" in refused.err
    assert cli("delete", broken, "--yes").code == 0
    assert cli("show", broken).code == 4
    two = [by_name["IMG_0000.jpg"]["image_id"], by_name["IMG_0001.jpg"]["image_id"]]
    batch = cli("delete", *two, "0" * 32, "--yes", "--json")
    assert batch.code == 4
    assert batch.json() == {"deleted": two, "not_found": ["0" * 32]}
    assert cli("list", "--all", "--json").json()["count"] == 7

    # --- deleted photos leave the journal: sending the folder again sends exactly those three
    back = cli("upload", str(album), "--json")
    assert back.code == 0, back.err
    sent = sorted(Path(f["path"]).name for f in back.json()["files"] if f["status"] == "uploaded")
    assert sent == ["IMG_0000.jpg", "IMG_0001.jpg", "broken.png"]


def test_live_updates_are_not_served_yet_so_wait_fails_before_sending(cli: Cli, album: Path) -> None:
    cli("register", "--username", "wanda", "--email", "wanda@example.com", "--password-stdin", stdin=PASSWORD)
    waited = cli("upload", str(album / "turned.jpg"), "--wait")
    assert waited.code == 1
    assert "this server offers no live updates (GET /api/v1/info has no websocket_url" in waited.err
    assert "uploaded" not in waited.err
    assert cli("list", "--json").json()["count"] == 0


def test_a_refused_token_says_log_in_again(cli: Cli) -> None:
    done = cli("list", extra_env={"PHOTOPIPE_TOKEN": "not.a.jwt"})
    assert done.code == 3
    assert done.out == ""
    assert "the token in PHOTOPIPE_TOKEN was refused" in done.err
    assert "log in again" in done.err


def test_an_unreachable_server_says_what_to_do(cli: Cli) -> None:
    done = cli("list", "--api", "http://127.0.0.1:9", extra_env={"PHOTOPIPE_TOKEN": "x"})
    assert done.code == 1
    assert "cannot reach http://127.0.0.1:9 (connection refused)" in done.err
    assert "make run" in done.err


def test_a_camera_still_goes_straight_to_the_library(cli: Cli, home: Path) -> None:
    import cv2
    import numpy as np

    cli("register", "--username", "cam", "--email", "cam@example.com", "--password-stdin", stdin=PASSWORD)
    video = home / "door-camera.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), 5, (320, 240))
    frame = np.asarray(Image.open(io.BytesIO(photo_jpeg((320, 240)))).convert("RGB"))[:, :, ::-1]
    for _ in range(5):
        writer.write(np.ascontiguousarray(frame))
    writer.release()
    done = cli("camera", "capture", str(video), "-o", "door.jpg", "--upload", "--json")
    assert done.code == 0, done.err
    report = done.json()
    assert report["upload"]["status"] == "uploaded"
    shown = cli("show", report["upload"]["image_id"], "--json").json()
    assert shown["filename"] == "door.jpg"
