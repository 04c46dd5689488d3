"""Live updates over a WebSocket, against a fake server on loopback: messages in order, a refused token,
a server without live updates, reconnecting after a drop, the idle heartbeat, and following photos to
their final state (with the reason of a rejected one, and a catch-up after a reconnect)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from photopipe_cli.api import Api
from photopipe_cli.errors import CliError, ExitCode
from photopipe_cli.follow import Follower, TimedOut, Tracked
from photopipe_cli.live import HEARTBEAT_MESSAGE, Endpoint, Event, LiveUpdates, Lost, Reconnected, endpoint
from photopipe_cli.settings import Credential, Server
from tests.fakes.live_server import FakeLiveServer
from tests.unit.cli.conftest import Run

T0, T1, T2, T3 = (f"2026-12-01T10:00:0{i}+00:00" for i in range(4))


@pytest.fixture
def fake() -> Iterator[FakeLiveServer]:
    with FakeLiveServer(token="good") as server:
        yield server


def connect(fake: FakeLiveServer, token: str = "good", **options: Any) -> LiveUpdates:  # noqa: S107
    return LiveUpdates(Endpoint(fake.ws_url, True), token, reconnect_first_s=0.05, **options).open()


def events(live: LiveUpdates, count: int, timeout: float = 20) -> list[Event]:
    got: list[Event] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {got} arrived"
        event = live.next(0.1)
        if event is not None:
            got.append(event)
    return got


def api_for(fake: FakeLiveServer) -> Api:
    return Api(Server(fake.base_url, "--api"), Credential("good", "PHOTOPIPE_TOKEN"))


def test_messages_arrive_in_order_and_other_frames_are_ignored(fake: FakeLiveServer) -> None:
    with connect(fake) as live:
        fake.wait_for_connections(1)
        fake.send({"type": "image.updated", "image_id": "i1", "state": "processing", "at": T0})
        fake.send(
            {"message": "Forbidden", "connectionId": "abc"}
        )  # what API Gateway says to an unknown route
        fake.send("not json")
        fake.send({"type": "job.updated", "job_id": "j1", "state": "running", "progress": 40, "at": T1})
        assert events(live, 2) == [
            {"type": "image.updated", "image_id": "i1", "state": "processing", "at": T0},
            {"type": "job.updated", "job_id": "j1", "state": "running", "progress": 40, "at": T1},
        ]
    assert fake.tokens_seen == ["good"]


def test_a_refused_token_says_log_in_again(fake: FakeLiveServer) -> None:
    with pytest.raises(CliError, match="refused your token \\(HTTP 401\\): log in again") as info:
        connect(fake, token="stale")
    assert info.value.code is ExitCode.NOT_LOGGED_IN


def test_the_websocket_url_is_read_from_the_servers_info(fake: FakeLiveServer) -> None:
    assert endpoint(api_for(fake)) == Endpoint(fake.ws_url, True)


def test_a_server_without_live_updates_fails_clearly() -> None:
    with FakeLiveServer(announce=False, websocket=False) as plain:
        where = endpoint(api_for(plain))
        assert where == Endpoint(plain.ws_url, False)  # the ws://<host>/ws guess
        with pytest.raises(CliError) as info:
            LiveUpdates(where, "good").open()
    assert info.value.message == (
        "this server offers no live updates (GET /api/v1/info has no websocket_url, and "
        f"{plain.ws_url} answered: HTTP 404)"
    )
    assert info.value.code is ExitCode.FAILED


def test_a_dropped_connection_is_reopened(fake: FakeLiveServer) -> None:
    notices: list[str] = []
    with connect(fake, on_notice=notices.append) as live:
        fake.wait_for_connections(1)
        fake.drop()
        lost, reconnected = events(live, 2)
        assert isinstance(lost, Lost)
        assert isinstance(reconnected, Reconnected)
        fake.wait_for_connections(2)
        fake.send({"type": "image.updated", "image_id": "i1", "state": "processed", "at": T1})
        assert events(live, 1) == [
            {"type": "image.updated", "image_id": "i1", "state": "processed", "at": T1}
        ]
        assert live.connections == 2
    assert "live updates: reconnected" in notices
    assert "live updates: connection lost (closed (1001)); reconnecting" in notices


def test_reconnecting_backs_off_while_the_server_is_unavailable(fake: FakeLiveServer) -> None:
    notices: list[str] = []
    with connect(fake, on_notice=notices.append) as live:
        fake.wait_for_connections(1)
        fake.unavailable = 2
        fake.drop()
        lost, reconnected = events(live, 2)
        assert (type(lost), type(reconnected)) == (Lost, Reconnected)
    delays = [n for n in notices if n.startswith("live updates: cannot reconnect yet; trying again in")]
    assert delays == [  # exponential: 0.05 s, then twice that
        "live updates: cannot reconnect yet; trying again in 0.05 s",
        "live updates: cannot reconnect yet; trying again in 0.1 s",
    ]
    assert fake.unavailable == 0


def test_an_idle_connection_sends_a_heartbeat(fake: FakeLiveServer) -> None:
    with connect(fake, heartbeat_s=0.05):
        deadline = time.monotonic() + 20
        while HEARTBEAT_MESSAGE not in fake.heartbeats:
            assert time.monotonic() < deadline, "no heartbeat arrived"
            time.sleep(0.02)
    assert json.loads(HEARTBEAT_MESSAGE) == {"action": "ping"}


# ------------------------------------------------------------------------------------ following


def test_photos_are_followed_to_their_final_state_with_reasons(fake: FakeLiveServer) -> None:
    fake.records["i2"] = {
        "image_id": "i2",
        "state": "rejected",
        "reason": "corrupt",
        "reason_message": "damaged",
    }
    changes: list[tuple[str, str | None, str | None]] = []
    with connect(fake) as live:
        fake.wait_for_connections(1)
        follower = Follower(
            live, api_for(fake), "image", on_change=lambda t: changes.append((t.id, t.state, t.reason))
        )
        follower.add(["i1", "i2"])
        for message in (
            {"image_id": "i1", "state": "processing", "at": T0},
            {"image_id": "other", "state": "processing", "at": T0},  # someone else's photo: not followed
            {"image_id": "i2", "state": "processing", "at": T0},
            {"image_id": "i1", "state": "processed", "at": T2},
            {"image_id": "i1", "state": "processing", "at": T1},  # a late duplicate: older than the last
            {"image_id": "i1", "state": "classification_skipped", "at": T3},
            {"image_id": "i2", "state": "rejected", "at": T1},  # no reason in the message: fetched
        ):
            fake.send({"type": "image.updated", **message})
        tracked = follower.run(timeout=30)
    assert tracked["i1"].states == ["processing", "processed", "classification_skipped"]
    assert tracked["i1"].reason is None
    assert tracked["i2"].states == ["processing", "rejected"]
    assert tracked["i2"].reason == "corrupt: damaged"
    assert changes[-1] == ("i2", "rejected", "corrupt: damaged")
    assert "other" not in tracked


def test_after_a_reconnect_the_follower_catches_up_on_what_it_missed(fake: FakeLiveServer) -> None:
    with connect(fake) as live:
        fake.wait_for_connections(1)
        follower = Follower(live, api_for(fake), "image")
        follower.add(["i3"])
        # the photo finishes while the connection is down: its update is never sent
        fake.records["i3"] = {"image_id": "i3", "state": "classified", "updated_at": T2}
        fake.drop()
        tracked = follower.run(timeout=30)
    assert tracked["i3"].state == "classified"
    assert tracked["i3"].record == fake.records["i3"]


def test_the_follower_gives_up_after_its_timeout(fake: FakeLiveServer) -> None:
    with connect(fake) as live:
        follower = Follower(live, api_for(fake), "image")
        follower.add(["i4"])
        with pytest.raises(TimedOut, match="1 still in progress"):
            follower.run(timeout=0.3)
    assert isinstance(follower.tracked["i4"], Tracked)


# ------------------------------------------------------------------------------------- commands


def test_watch_prints_json_lines_until_interrupted(fake: FakeLiveServer, tmp_path: Any) -> None:
    fake.records["i9"] = {
        "image_id": "i9",
        "state": "rejected",
        "reason": "too_small",
        "reason_message": "8x8",
    }
    env = {
        **os.environ,
        "PHOTOPIPE_TOKEN": "good",
        "PHOTOPIPE_CONFIG_DIR": str(tmp_path / "config"),
        "PHOTOPIPE_STATE_DIR": str(tmp_path / "state"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "photopipe_cli.main", "watch", "--json", "--api", fake.base_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in process.stdout or []:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        fake.wait_for_connections(1, timeout=60)
        fake.send({"type": "image.updated", "image_id": "i8", "state": "processing", "at": T0})
        fake.send({"type": "image.updated", "image_id": "i9", "state": "rejected", "at": T1})
        first, second = json.loads(lines.get(timeout=30)), json.loads(lines.get(timeout=30))
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert first == {"type": "image.updated", "image_id": "i8", "state": "processing", "at": T0}
    assert second == {
        "type": "image.updated",
        "image_id": "i9",
        "state": "rejected",
        "at": T1,
        "reason": "too_small: 8x8",
    }
    assert process.returncode == 0, err
    assert "Traceback" not in err


def test_watch_with_a_refused_token_exits_3(
    fake: FakeLiveServer, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOTOPIPE_TOKEN", "stale")
    result = run("watch", "--api", fake.base_url)
    assert result.code == 3
    assert "log in again" in result.err
    assert result.out == ""


def test_upload_wait_without_live_updates_fails_before_sending_anything(
    run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 100)
    monkeypatch.setenv("PHOTOPIPE_TOKEN", "good")
    with FakeLiveServer(announce=False, websocket=False) as plain:
        result = run("upload", str(tmp_path / "a.jpg"), "--wait", "--api", plain.base_url)
    assert result.code == 1
    assert "this server offers no live updates (GET /api/v1/info has no websocket_url" in result.err
    assert "upload without --wait" in result.err
    assert "uploaded" not in result.err


def test_upload_wait_prints_each_change_and_the_reason_of_a_rejected_photo(
    fake: FakeLiveServer, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from photopipe_cli.commands.upload import follow_uploads
    from photopipe_cli.journal import Journal
    from photopipe_cli.photos import find_photos
    from photopipe_cli.ui import Ui
    from photopipe_cli.uploader import QuietReporter, Uploader, UploadOptions
    from tests.unit.cli.fakes import FakeApi
    from tests.unit.cli.pictures import jpeg, photo

    (tmp_path / "good.jpg").write_bytes(jpeg(photo((64, 48))))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 20)
    api = FakeApi()
    with Journal(tmp_path / "journal.sqlite3") as journal:
        outcomes = Uploader(
            api,
            journal,
            user_id="u1",
            options=UploadOptions(),
            max_upload_bytes=None,
            reporter=QuietReporter(),
        ).run(find_photos([tmp_path / "good.jpg", tmp_path / "bad.png"]))
    good, bad = (o.image_id or "" for o in outcomes)
    api.records[bad] = {
        "image_id": bad,
        "state": "rejected",
        "reason": "corrupt",
        "reason_message": "truncated",
    }
    with connect(fake) as live:
        fake.wait_for_connections(1)
        for image_id, state, at in (
            (good, "processing", T0),
            (bad, "processing", T0),
            (good, "processed", T1),
        ):
            fake.send({"type": "image.updated", "image_id": image_id, "state": state, "at": at})
        fake.send({"type": "image.updated", "image_id": bad, "state": "rejected", "at": T2})
        fake.send({"type": "image.updated", "image_id": good, "state": "classification_skipped", "at": T3})
        problems = follow_uploads(Ui(), api, live, outcomes, timeout=30)

    assert problems  # a photo was rejected: `upload --wait` exits 1
    assert outcomes[0].states == ["processing", "processed", "classification_skipped"]
    assert (outcomes[1].final_state, outcomes[1].reason) == ("rejected", "corrupt: truncated")
    err = capsys.readouterr().err
    assert "Following 2 photos through processing (live updates)..." in err
    assert (
        f"rejected               {tmp_path / 'bad.png'}  ({bad})\n                       corrupt: truncated"
        in err
    )
    assert f"classification_skipped {tmp_path / 'good.jpg'}  ({good})" in err
