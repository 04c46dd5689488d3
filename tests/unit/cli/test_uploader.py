"""The upload engine: what is sent, what is skipped and why, and what the journal keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from photopipe_cli.errors import NotLoggedIn
from photopipe_cli.journal import Journal
from photopipe_cli.photos import find_photos
from photopipe_cli.uploader import QuietReporter, Status, Uploader, UploadOptions
from tests.unit.cli.fakes import FakeApi, sha256
from tests.unit.cli.pictures import jpeg, photo


def uploader(api: FakeApi, journal: Journal, **options: object) -> Uploader:
    return Uploader(
        api,
        journal,
        user_id="u1",
        options=UploadOptions(**options),  # type: ignore[arg-type]
        max_upload_bytes=50_000_000,
        reporter=QuietReporter(),
    )


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.sqlite3")


@pytest.fixture
def album(tmp_path: Path) -> Path:
    folder = tmp_path / "album"
    folder.mkdir()
    for i in range(4):
        (folder / f"p{i}.jpg").write_bytes(jpeg(photo((320, 240), seed=i)))
    (folder / "p9-copy-of-p0.jpg").write_bytes((folder / "p0.jpg").read_bytes())
    (folder / "readme.jpg").write_text("not a photo\n")
    return folder


def test_photos_arrive_duplicates_and_non_images_are_skipped(album: Path, journal: Journal) -> None:
    api = FakeApi()
    outcomes = {Path(o.path).name: o for o in uploader(api, journal, jobs=3).run(find_photos([album]))}

    assert {n: o.status for n, o in outcomes.items()} == {
        "p9-copy-of-p0.jpg": Status.DUPLICATE,
        "p0.jpg": Status.UPLOADED,
        "p1.jpg": Status.UPLOADED,
        "p2.jpg": Status.UPLOADED,
        "p3.jpg": Status.UPLOADED,
        "readme.jpg": Status.NOT_AN_IMAGE,
    }
    assert outcomes["p9-copy-of-p0.jpg"].duplicate_of == str(album / "p0.jpg")
    assert outcomes["readme.jpg"].reason == "not an image: it looks like plain text"
    assert not any(o.failed for o in outcomes.values())  # found by walking a folder: skipped, not failed
    # what arrived is exactly the four distinct photos, byte for byte, declared with their hash
    assert sorted(api.stored.values()) == sorted((album / f"p{i}.jpg").read_bytes() for i in range(4))
    for image_id, body in api.declared.items():
        assert body["sha256"] == sha256(api.stored[image_id])
        assert body["content_type"] == "image/jpeg"
        assert body["size"] == len(api.stored[image_id])


def test_a_rerun_sends_only_what_has_not_arrived(album: Path, journal: Journal) -> None:
    first = FakeApi()
    sent_first = {
        Path(o.path).name: o.image_id
        for o in uploader(first, journal).run(find_photos([album / "p0.jpg", album / "p1.jpg"]))
    }
    again = FakeApi()
    outcomes = {Path(o.path).name: o for o in uploader(again, journal).run(find_photos([album]))}
    assert outcomes["p0.jpg"].status is Status.ALREADY_UPLOADED
    assert outcomes["p1.jpg"].status is Status.ALREADY_UPLOADED
    assert outcomes["p0.jpg"].image_id == sent_first["p0.jpg"]  # the id it got the first time
    assert sorted(api_bytes for api_bytes in again.stored.values()) == sorted(
        (album / f"p{i}.jpg").read_bytes() for i in (2, 3)
    )
    forced = FakeApi()
    uploader(forced, journal, force=True).run(find_photos([album / "p0.jpg"]))
    assert list(forced.stored.values()) == [(album / "p0.jpg").read_bytes()]


def test_a_photo_whose_category_is_known_is_still_uploaded_and_says_so(album: Path, journal: Journal) -> None:
    known = sha256((album / "p2.jpg").read_bytes())
    api = FakeApi(known={known: {"category": "pets", "label_en": "Pets"}})
    (outcome,) = uploader(api, journal).run(find_photos([album / "p2.jpg"]))
    assert outcome.status is Status.UPLOADED
    assert outcome.known_category == {"category": "pets", "label_en": "Pets", "source": "exact_cache"}
    assert list(api.stored.values()) == [(album / "p2.jpg").read_bytes()]


def test_compressed_uploads_send_the_compressed_bytes_and_journal_the_original(
    tmp_path: Path, journal: Journal
) -> None:
    big = tmp_path / "big.png"
    photo((3000, 2000), noise=30).save(big)
    api = FakeApi()
    (outcome,) = uploader(api, journal, compress=True, max_side=1000, max_kb=100).run(find_photos([big]))
    assert outcome.status is Status.UPLOADED
    (sent,) = api.stored.values()
    assert len(sent) <= 100_000 < big.stat().st_size
    assert api.declared[outcome.image_id or ""]["content_type"] == "image/jpeg"
    assert api.declared[outcome.image_id or ""]["filename"] == "big.jpg"
    assert outcome.compression is not None
    assert (
        outcome.compression["width"],
        outcome.compression["height"],
    ) == (1000, 667)
    assert journal.arrived(api.server.url, "u1", sha256(big.read_bytes())) is not None


def test_a_file_named_on_the_command_line_that_is_not_a_photo_fails(album: Path, journal: Journal) -> None:
    (outcome,) = uploader(FakeApi(), journal).run(find_photos([album / "readme.jpg"]))
    assert outcome.status is Status.NOT_AN_IMAGE
    assert outcome.failed


def test_a_photo_over_the_server_limit_fails_with_what_to_do(album: Path, journal: Journal) -> None:
    api = FakeApi()
    engine = uploader(api, journal)
    engine.max_upload_bytes = 1000
    (outcome,) = engine.run(find_photos([album / "p1.jpg"]))
    assert outcome.status is Status.FAILED
    assert outcome.reason is not None
    assert "over the server's 1.0 KB limit; try --compress" in outcome.reason
    assert api.stored == {}


def test_a_refused_token_stops_the_whole_run(album: Path, journal: Journal) -> None:
    with pytest.raises(NotLoggedIn, match="log in again"):
        uploader(FakeApi(token_valid=False), journal).run(find_photos([album]))
    assert journal.uploads("http://127.0.0.1:9", "u1") == 0
