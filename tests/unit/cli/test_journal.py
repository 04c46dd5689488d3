"""The upload journal: what arrived, per server and account, so that a rerun skips it."""

from __future__ import annotations

import threading
from pathlib import Path

from photopipe_cli.journal import Journal

SERVER, OTHER_SERVER = "http://127.0.0.1:3000", "https://photos.example.com"


def test_an_upload_recorded_is_found_again_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.sqlite3"
    with Journal(path) as journal:
        journal.record(SERVER, "u1", sha256="a" * 64, image_id="img1", path="/p/a.jpg", bytes_sent=123)
    with Journal(path) as journal:
        arrived = journal.arrived(SERVER, "u1", "a" * 64)
        assert arrived is not None
        assert (arrived.image_id, arrived.path, arrived.bytes_sent) == ("img1", "/p/a.jpg", 123)
        assert journal.uploads(SERVER, "u1") == 1


def test_entries_belong_to_one_server_and_one_account(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as journal:
        journal.record(SERVER, "u1", sha256="a" * 64, image_id="img1", path="/p/a.jpg", bytes_sent=1)
        assert journal.arrived(SERVER, "u2", "a" * 64) is None
        assert journal.arrived(OTHER_SERVER, "u1", "a" * 64) is None
        assert journal.arrived(SERVER, "u1", "b" * 64) is None


def test_deleting_a_photo_forgets_it_so_it_can_be_sent_again(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as journal:
        journal.record(SERVER, "u1", sha256="a" * 64, image_id="img1", path="/a", bytes_sent=1)
        journal.record(SERVER, "u1", sha256="b" * 64, image_id="img2", path="/b", bytes_sent=1)
        journal.remember_job(SERVER, "u1", job_id="job1", image_id="img1")
        assert journal.forget_images(SERVER, "u1", ["img1", "missing"]) == 1
        assert journal.arrived(SERVER, "u1", "a" * 64) is None
        assert journal.arrived(SERVER, "u1", "b" * 64) is not None
        assert journal.latest_job(SERVER, "u1", "img1") is None


def test_the_latest_enhancement_job_of_a_photo_is_remembered(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as journal:
        journal.remember_job(SERVER, "u1", job_id="job1", image_id="img1")
        journal.remember_job(SERVER, "u1", job_id="job2", image_id="img1", batch_id="b1")
        assert journal.latest_job(SERVER, "u1", "img1") == "job2"
        assert journal.latest_job(SERVER, "u2", "img1") is None


def test_parallel_uploads_all_land_in_the_journal(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as journal:

        def record(n: int) -> None:
            for i in range(25):
                sha = f"{n:02d}{i:02d}".ljust(64, "0")
                journal.record(
                    SERVER, "u1", sha256=sha, image_id=f"img{n}-{i}", path=f"/{n}/{i}", bytes_sent=i
                )

        threads = [threading.Thread(target=record, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert journal.uploads(SERVER, "u1") == 200
