"""`photopipe local dlq list|show|redrive`: the dead letters of the running local stack
(`photopipe_cli.dlq.DeadLetters`): what each is about, why it failed, and sending it back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from photopipe_cli.options import JsonOption, StateFileOption, TemplateOption

if TYPE_CHECKING:
    from photopipe_cli.dlq import DeadLetter, DeadLetters
    from photopipe_cli.ui import Ui

dlq = typer.Typer(
    help="The dead-letter queues of the running local stack: list, show and redrive what failed.",
    no_args_is_help=True,
)

QueueOption = Annotated[
    str | None,
    typer.Option(
        "--queue",
        metavar="NAME",
        help="One dead-letter queue, by its logical id (ClassifyDeadLetterQueue) or its source queue's "
        "(ClassifyQueue). Default: all of them.",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    from photopipe_cli.commands.local import local

    local.add_typer(dlq, name="dlq")


def _letters(template: str, state_file: str | None) -> DeadLetters:
    from photopipe_cli.dlq import DeadLetters
    from photopipe_cli.local_stack import running_state

    return DeadLetters.from_state(running_state(template, state_file))


def _aws_failure(e: Exception) -> Exception:
    from photopipe_cli.errors import CliError

    return CliError(f"the local stack's AWS endpoint failed: {e}")


@dlq.command("list")
def list_letters(
    queue: QueueOption = None,
    template: TemplateOption = "template.yaml",
    state_file: StateFileOption = None,
    json_: JsonOption = False,
) -> None:
    """List the dead letters: queue, message id, what it is about, its state and reason now, sent at.

    Looking receives the messages and makes them visible again at once: nothing moves."""
    from botocore.exceptions import BotoCoreError, ClientError

    from photopipe_cli.errors import NotFound
    from photopipe_cli.ui import Ui

    ui = Ui(json_mode=json_)
    try:
        letters = _letters(template, state_file).list_letters(queue)
    except KeyError as e:
        raise NotFound(str(e.args[0])) from None
    except (BotoCoreError, ClientError) as e:
        raise _aws_failure(e) from None
    if json_:
        ui.emit({"items": [letter.to_json() for letter in letters], "count": len(letters)})
        return
    _table(ui, letters)
    ui.info(f"{len(letters)} dead letter{'s' if len(letters) != 1 else ''}")


def _about(letter: DeadLetter) -> str:
    subject = letter.subject
    return f"{subject.kind} {subject.id}" if subject.id else subject.kind


def _reason(letter: DeadLetter) -> str:
    subject = letter.subject
    return ": ".join(p for p in (subject.reason, subject.reason_message) if p) or "-"


def _table(ui: Ui, letters: list[DeadLetter]) -> None:
    """A table on a terminal; tab-separated lines, nothing cut, when piped (like `photopipe list`)."""
    from rich.table import Table

    from photopipe_cli.ui import plain

    rows = [
        (
            letter.queue,
            letter.message_id,
            _about(letter),
            letter.subject.state or "-",
            _reason(letter),
            letter.sent_at or "-",
        )
        for letter in letters
    ]
    if not ui.out.is_terminal:
        import sys

        sys.stdout.writelines("\t".join(row) + "\n" for row in rows)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("QUEUE", "MESSAGE ID", "ABOUT", "STATE", "REASON", "SENT AT"):
        table.add_column(column, no_wrap=column != "REASON", overflow="fold")
    for row in rows:
        table.add_row(*(plain(cell) for cell in row))
    ui.print(table)


@dlq.command("show")
def show(
    message_id: Annotated[str, typer.Argument(metavar="MESSAGE_ID", help="From `photopipe local dlq list`.")],
    template: TemplateOption = "template.yaml",
    state_file: StateFileOption = None,
    json_: JsonOption = False,
) -> None:
    """Show one dead letter: where it is, what it is about, why it failed, and its body."""
    from botocore.exceptions import BotoCoreError, ClientError

    from photopipe_cli.errors import NotFound
    from photopipe_cli.ui import Ui

    ui = Ui(json_mode=json_)
    try:
        letter = _letters(template, state_file).show(message_id)
    except KeyError as e:
        raise NotFound(str(e.args[0])) from None
    except (BotoCoreError, ClientError) as e:
        raise _aws_failure(e) from None
    if json_:
        ui.emit(letter.to_json())
        return
    ui.fields(
        [
            ("queue", letter.queue),
            ("message id", letter.message_id),
            ("about", _about(letter)),
            ("state", letter.subject.state),
            ("reason", _reason(letter) if letter.subject.reason or letter.subject.reason_message else None),
            ("sent at", letter.sent_at),
            ("received", f"{letter.receive_count} times"),
            ("body", letter.body),
        ]
    )


@dlq.command("redrive")
def redrive(
    message_ids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[MESSAGE_ID]...", help="Only these (default: every dead letter).", show_default=False
        ),
    ] = None,
    queue: QueueOption = None,
    template: TemplateOption = "template.yaml",
    state_file: StateFileOption = None,
    json_: JsonOption = False,
) -> None:
    """Send dead letters back to the queue they came from (every consumer is idempotent).

    Each is sent to its source queue, then deleted from the dead-letter queue. Exit code 4 when a
    MESSAGE_ID named is in none of them (the others are still sent back)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from photopipe_cli.errors import NotFound
    from photopipe_cli.ui import Ui

    ui = Ui(json_mode=json_)
    try:
        moved = _letters(template, state_file).redrive(queue, message_ids or None)
    except KeyError as e:
        hint = "The other messages named were sent back." if message_ids and len(message_ids) > 1 else None
        raise NotFound(str(e.args[0]), hint=hint) from None
    except (BotoCoreError, ClientError) as e:
        raise _aws_failure(e) from None
    if json_:
        ui.emit({"redriven": [letter.to_json() for letter in moved], "count": len(moved)})
        return
    for letter in moved:
        ui.info(f"redriven  {letter.message_id}  {letter.queue} -> its source queue  ({_about(letter)})")
    ui.success(
        f"{len(moved)} dead letter{'s' if len(moved) != 1 else ''} sent back"
        if moved
        else "nothing to redrive"
    )
