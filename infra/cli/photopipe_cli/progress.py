"""How `upload` shows itself: rich progress bars on a terminal (one per file being sent and one for the
total, with bytes/s and time left), one line per file elsewhere, nothing with `--json`."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from photopipe_cli.ui import Ui, human_bytes
from photopipe_cli.uploader import Outcome, QuietReporter, Reporter, Status

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


def outcome_line(outcome: Outcome) -> tuple[str, str]:
    """(text, style) for one file's outcome."""
    if outcome.status is Status.UPLOADED:
        text = f"uploaded  {outcome.path} → {outcome.image_id} ({human_bytes(outcome.bytes_sent)})"
        c = outcome.compression
        if c and not c.get("kept_original"):
            text += f", compressed from {human_bytes(c['source_bytes'])} to {c['width']}x{c['height']} q{c['quality']}"
        if outcome.known_category:
            k = outcome.known_category
            text += f"; category already known: {k.get('label_en') or k.get('category')}"
        return text, "green"
    if outcome.status is Status.ALREADY_UPLOADED:
        return f"skipped   {outcome.path}: {outcome.reason}", "dim"
    if outcome.status is Status.DUPLICATE:
        return f"skipped   {outcome.path}: duplicate, {outcome.reason}", "dim"
    if outcome.status is Status.NOT_AN_IMAGE and not outcome.explicit:
        return f"skipped   {outcome.path}: {outcome.reason}", "yellow"
    return f"failed    {outcome.path}: {outcome.reason}", "red"


class LineReporter(QuietReporter):
    """One line per file on stderr (not a terminal)."""

    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def finished(self, outcome: Outcome, key: int | None = None) -> None:
        self.ui.info(outcome_line(outcome)[0])


class BarsReporter:
    """Rich progress bars on stderr; finished files scroll above them."""

    def __init__(self, ui: Ui) -> None:
        self.ui = ui
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._total: TaskID | None = None
        self._tasks: dict[int, TaskID] = {}
        self._left: dict[int, int] = {}  # bytes each file still has to send (form fields not counted)
        self._done = 0
        self._files = 0

    def _total_text(self) -> str:
        return f"[bold]total[/] {self._done}/{self._files} photos"

    def begin(self, files: int, total_bytes: int) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._files = files
        if not files:
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.ui.err,
        )
        self._progress.start()
        self._total = self._progress.add_task(self._total_text(), total=total_bytes)

    def started(self, key: int, name: str, size: int) -> None:
        from rich.markup import escape

        with self._lock:
            if self._progress is None:
                return
            self._left[key] = size
            self._tasks[key] = self._progress.add_task(escape(name[:40]), total=size)

    def advance(self, key: int, sent: int) -> None:
        with self._lock:
            if self._progress is None or key not in self._tasks or self._total is None:
                return
            step = min(sent, self._left[key])
            if step:
                self._left[key] -= step
                self._progress.advance(self._tasks[key], step)
                self._progress.advance(self._total, step)

    def resized(self, key: int, old: int, new: int) -> None:
        with self._lock:
            if self._progress is None or self._total is None:
                return
            total = next(t.total for t in self._progress.tasks if t.id == self._total) or 0
            self._progress.update(self._total, total=max(0, total - old + new))
            if key in self._tasks:
                self._left[key] = new
                self._progress.update(self._tasks[key], total=new)

    def finished(self, outcome: Outcome, key: int | None = None) -> None:
        text, style = outcome_line(outcome)
        with self._lock:
            console = self._progress.console if self._progress is not None else self.ui.err
            console.print(text, markup=False, style=style)
            if self._progress is None or key is None or key not in self._tasks:
                return
            self._progress.remove_task(self._tasks.pop(key))
            self._done += 1
            assert self._total is not None
            self._progress.update(self._total, description=self._total_text())

    def end(self) -> None:
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None


def reporter_for(ui: Ui) -> Reporter:
    if ui.json:
        return QuietReporter()
    if ui.progress:
        return BarsReporter(ui)
    return LineReporter(ui)
