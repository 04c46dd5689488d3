"""The commands that need no server (compress, camera, restore), as a user runs them: exit codes,
what lands on stdout (only data with --json) and stderr, and the files written."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from photopipe_cli.main import main
from tests.unit.cli.conftest import Run
from tests.unit.cli.pictures import jpeg, photo

# ------------------------------------------------------------------------------------------ compress


@pytest.fixture
def big(tmp_path: Path) -> Path:
    path = tmp_path / "holiday.jpg"
    path.write_bytes(jpeg(photo((3000, 2000), noise=30), quality=95, orientation=6))
    return path


def test_compress_writes_an_upright_jpeg_within_the_budget(run: Run, big: Path) -> None:
    result = run("compress", str(big), "--max-kb", "200")
    assert result.code == 0, result.err
    assert result.out == ""
    out = big.with_name("holiday_compressed.jpg")
    assert f"→ {out}" in result.err
    assert out.stat().st_size <= 200_000
    with Image.open(out) as im:
        assert im.size == (1280, 1920)  # stored 3000x2000 turned by EXIF 6: portrait, then fitted to 1920


def test_compress_json_is_the_only_thing_on_stdout(run: Run, big: Path, tmp_path: Path) -> None:
    result = run("compress", str(big), "-o", str(tmp_path / "small.jpg"), "--max-side", "800", "--json")
    assert result.code == 0
    data = json.loads(result.out)  # the whole of stdout is one JSON document
    assert data["output"] == str(tmp_path / "small.jpg")
    assert (data["width"], data["height"]) == (533, 800)
    assert data["bytes"] == (tmp_path / "small.jpg").stat().st_size <= 400_000
    assert result.err == ""


def test_compress_to_stdout(big: Path, capsysbinary: pytest.CaptureFixture[bytes], home: Path) -> None:
    assert main(["compress", str(big), "-o", "-", "--quality", "60"]) == 0
    data = capsysbinary.readouterr().out
    assert Image.open(io.BytesIO(data)).format == "JPEG"


def test_compress_usage_errors_exit_2(run: Run, big: Path, tmp_path: Path) -> None:
    both = run("compress", str(big), "--quality", "50", "--max-kb", "100")
    assert both.code == 2
    assert "not both" in both.err
    missing = run("compress", str(tmp_path / "nope.jpg"))
    assert missing.code == 2
    assert "does not exist" in missing.err
    assert run("compress", str(big), "--max-side", "0").code == 2


def test_compress_never_overwrites_without_force(run: Run, big: Path) -> None:
    assert run("compress", str(big)).code == 0
    again = run("compress", str(big))
    assert again.code == 1
    assert "already exists" in again.err
    assert "--force" in again.err
    assert run("compress", str(big), "--force").code == 0


def test_compress_refuses_what_is_not_a_photo(run: Run, tmp_path: Path) -> None:
    notes = tmp_path / "notes.jpg"
    notes.write_text("milk, eggs\n")
    result = run("compress", str(notes))
    assert result.code == 1
    assert result.err.startswith("error: unsupported file type: it looks like plain text")
    assert "Traceback" not in result.err


# ------------------------------------------------------------------------------------------- camera

COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]  # BGR, one per second of video


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """A 3-second 10 fps clip standing in for a camera: red, then green, then blue frames."""
    path = tmp_path / "camera.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10, (160, 120))
    assert writer.isOpened()
    for colour in COLOURS:
        for _ in range(10):
            writer.write(np.full((120, 160, 3), colour, np.uint8))
    writer.release()
    return path


def test_camera_list_says_when_there_is_none(run: Run) -> None:
    result = run("camera", "list", "--json")
    assert result.code == 0
    cameras = json.loads(result.out)["cameras"]
    assert isinstance(cameras, list)
    if not list(Path("/dev").glob("video*")):  # this build machine has no camera
        assert cameras == []
        human = run("camera", "list")
        assert (human.code, human.out, human.err.strip()) == (0, "", "No camera found on this machine.")


def test_camera_capture_saves_the_first_frame(run: Run, video: Path, tmp_path: Path) -> None:
    result = run("camera", "capture", str(video), "-o", str(tmp_path / "still.jpg"), "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out) == {
        "output": str(tmp_path / "still.jpg"),
        "width": 160,
        "height": 120,
        "device": str(video),
    }
    with Image.open(tmp_path / "still.jpg") as still:
        assert still.format == "JPEG"
        r, g, b = still.convert("RGB").getpixel((80, 60))  # type: ignore[misc]
        assert r > 200
        assert g < 60
        assert b < 60


def test_camera_record_copies_seconds_of_frames(run: Run, video: Path, tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    result = run("camera", "record", "1.5", str(video), "-o", str(clip), "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert (data["frames"], data["fps"], data["width"], data["height"]) == (15, 10.0, 160, 120)
    assert data["ended_early"] is False
    check = cv2.VideoCapture(str(clip))
    assert int(check.get(cv2.CAP_PROP_FRAME_COUNT)) == 15
    check.release()


def test_camera_record_says_when_the_source_ended_early(run: Run, video: Path, tmp_path: Path) -> None:
    result = run("camera", "record", "10", str(video), "-o", str(tmp_path / "clip.mp4"))
    assert result.code == 0, result.err
    assert "30 frames, 160x120 at 10 fps, 3 s" in result.err
    assert "warning: the source ended after 3 s" in result.err


def test_camera_errors(run: Run, video: Path, tmp_path: Path) -> None:
    missing = run("camera", "capture", str(tmp_path / "none.mp4"), "-o", str(tmp_path / "x.jpg"))
    assert missing.code == 4
    assert "no camera or video file" in missing.err
    absent = run("camera", "capture", "7", "-o", str(tmp_path / "x.jpg"))
    assert absent.code == 4
    assert "cannot open camera 7" in absent.err
    wrong = run("camera", "record", "1", str(video), "-o", str(tmp_path / "clip.mkv"))
    assert wrong.code == 2
    assert "name it .mp4 or .avi" in wrong.err
    assert run("camera", "record", "1", str(video)).code == 2  # -o is required


def test_camera_help_says_there_is_no_preview_window(run: Run) -> None:
    result = run("camera", "--help")
    assert result.code == 0
    assert "no preview window" in " ".join(result.out.split())


# ------------------------------------------------------------------------------------------ restore


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real GFPGAN architecture at 512 px with narrow channels and seeded random weights (as the
    enhancement end-to-end test uses): the pipeline's real path, in seconds."""
    from photopipe_export.arch import GfpganConfig
    from photopipe_export.export import export_gfpgan

    out = tmp_path_factory.mktemp("gfpgan-small")
    config = GfpganConfig(out_size=512, num_style_feat=64, num_mlp=2, narrow=0.0625)
    export_gfpgan(None, out, config=config, fp16=False)
    return out


def test_restore_runs_the_pipeline_on_a_local_photo(run: Run, small_model: Path, tmp_path: Path) -> None:
    from skimage import data

    source = tmp_path / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(source, quality=92)
    out = tmp_path / "restored.jpg"
    result = run(
        "restore", str(source), "-o", str(out), "--scale", "2", "--quality-level", "fast",
        "--model-dir", str(small_model), "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["output"] == str(out)
    assert (report["width"], report["height"]) == (1024, 1024)
    assert report["faces"] == 1
    assert report["provider"] == "CPUExecutionProvider"  # the best this machine has
    assert report["params"] == {"scale": 2, "tile_size": 400, "quality_level": "fast"}
    with Image.open(out) as im:
        assert (im.format, im.size) == ("JPEG", (1024, 1024))


def test_restore_with_a_model_for_other_face_sizes_says_so(run: Run, tmp_path: Path) -> None:
    model = tmp_path / "reduced"
    exported = run("models", "export", "--reduced", "--out", str(model), "--no-fp16", "--json")
    assert exported.code == 0
    manifest = json.loads(exported.out)
    assert manifest["manifest"] == str(model / "manifest.json")
    assert [f["precision"] for f in manifest["files"]] == ["fp32"]
    photo_path = tmp_path / "p.jpg"
    photo_path.write_bytes(jpeg(photo((64, 64))))
    result = run("restore", str(photo_path), "--model-dir", str(model))
    assert result.code == 1
    assert f"the model in {model} takes 64 px faces; the pipeline aligns faces to 512 px" in result.err
    assert "Traceback" not in result.err


def test_restore_without_a_model_says_how_to_export_one(run: Run, tmp_path: Path) -> None:
    photo_path = tmp_path / "p.jpg"
    photo_path.write_bytes(jpeg(photo((64, 64))))
    result = run("restore", str(photo_path), "--model-dir", str(tmp_path / "none"))
    assert result.code == 1
    assert f"no exported face model in {tmp_path / 'none'}" in result.err
    assert "photopipe models export" in result.err


# -------------------------------------------------------------------------------------------- help


def test_help_loads_no_heavy_library() -> None:
    # `photopipe --help` stays fast because the commands import what they need when they run
    probe = (
        "import sys\n"
        "from photopipe_cli.main import main\n"
        "code = main(['--help'])\n"
        "heavy = ['requests', 'PIL', 'numpy', 'cv2', 'onnxruntime', 'websockets', 'pydantic', 'boto3', 'photopipe.models']\n"
        "print(code, sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stderr.strip().splitlines()[-1] == "0 []", done.stderr
    assert "upload" in done.stdout
    assert "Exit codes: 0 ok" in done.stdout
