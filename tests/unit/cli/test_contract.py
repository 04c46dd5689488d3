"""What the client repeats from the service (so that `photopipe --help` does not import the domain
package) must stay what the service says."""

from __future__ import annotations

from photopipe.models import MAX_BATCH_IMAGES, Category, ImageState
from photopipe.models.jobs import LEVELS
from photopipe_cli.commands import enhance, library
from photopipe_cli.follow import IMAGE_FINAL
from tests.unit.cli.conftest import Run


def test_the_choices_offered_are_the_services() -> None:
    assert [s.value for s in library.State] == [s.value for s in ImageState]
    assert [c.value for c in library.Category] == [c.value for c in Category]
    assert [q.value for q in enhance.QualityLevel] == list(LEVELS)
    assert enhance.MAX_BATCH == MAX_BATCH_IMAGES


def test_a_photo_is_followed_until_a_state_nothing_moves_it_from() -> None:
    assert {
        ImageState.CLASSIFIED,
        ImageState.CLASSIFICATION_SKIPPED,
        ImageState.CLASSIFICATION_FAILED,
        ImageState.REJECTED,
        ImageState.FAILED,
    } == IMAGE_FINAL


def test_the_exit_codes_are_documented_in_the_help(run: Run) -> None:
    result = run("--help")
    assert result.code == 0
    text = " ".join(result.out.split())
    assert (
        "Exit codes: 0 ok · 1 failed · 2 usage error · 3 not logged in (log in again) · 4 not found" in text
    )


def test_a_wrong_command_line_is_a_usage_error(run: Run) -> None:
    unknown = run("uplod", "x")
    assert unknown.code == 2
    assert "No such command 'uplod'" in unknown.err
    bad = run("list", "--limit", "zero")
    assert bad.code == 2
    assert "Invalid value for '--limit'" in bad.err
    assert run("upload").code == 2  # PATH... is required
    assert run("list", "--state", "happy").code == 2
