"""Finding the photos in what a user names: by content, never by name."""

from __future__ import annotations

from pathlib import Path

from photopipe_cli.photos import find_photos
from tests.unit.cli.pictures import jpeg, photo, png


def test_photos_are_recognised_by_content_and_folders_walked_in_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "deep").mkdir()
    (tmp_path / "a.jpg").write_bytes(jpeg(photo((64, 48))))
    (tmp_path / "b" / "deep" / "IMG_0001").write_bytes(png(photo((64, 48))))  # no extension
    (tmp_path / "b" / "scan.txt").write_bytes(jpeg(photo((64, 48))))  # a JPEG, whatever its name
    (tmp_path / "b" / "notes.jpg").write_text("shopping list\n")  # text, whatever its name
    (tmp_path / ".hidden.jpg").write_bytes(jpeg(photo((64, 48))))
    (tmp_path / ".thumbnails").mkdir()
    (tmp_path / ".thumbnails" / "x.jpg").write_bytes(jpeg(photo((64, 48))))

    found = find_photos([tmp_path])

    names = [str(f.path.relative_to(tmp_path)) for f in found]
    assert names == ["a.jpg", "b/notes.jpg", "b/scan.txt", "b/deep/IMG_0001"]
    by_name = {str(f.path.relative_to(tmp_path)): f for f in found}
    assert by_name["a.jpg"].format is not None
    assert by_name["a.jpg"].format.name == "jpeg"
    assert by_name["b/scan.txt"].is_photo
    assert by_name["b/deep/IMG_0001"].format is not None
    assert by_name["b/deep/IMG_0001"].format.name == "png"
    assert not by_name["b/notes.jpg"].is_photo
    assert by_name["b/notes.jpg"].problem == "not an image: it looks like plain text"
    assert not any(f.explicit for f in found)


def test_named_files_are_explicit_and_problems_say_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "doc.jpg").write_bytes(b"%PDF-1.4\n" + b"x" * 100)
    found = find_photos([tmp_path / "empty.jpg", tmp_path / "doc.jpg", tmp_path / "missing.jpg"])
    assert [f.explicit for f in found] == [True, True, True]
    assert [f.problem for f in found] == [
        "not an image: the file is empty",
        "not an image: it looks like a PDF document",
        "no such file or directory",
    ]
