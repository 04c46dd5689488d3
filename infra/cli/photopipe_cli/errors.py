"""Exit codes and the errors a command raises to end with one.

A command never prints a traceback for something that is not a bug: it raises `CliError` (or a subclass)
with a sentence a person can act on, and the root group (`photopipe_cli.main`) prints `error: ...` on
stderr and exits with the error's code."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # the command ran and something it was asked to do did not happen
    USAGE = 2  # the command line is wrong (also what the parser answers)
    NOT_LOGGED_IN = 3  # no token, or the server refused it: log in again
    NOT_FOUND = 4  # the photo, job or file named does not exist (for this account)
    INTERRUPTED = 130  # Ctrl+C


EXIT_CODES_HELP = (
    "Exit codes: 0 ok · 1 failed · 2 usage error · 3 not logged in (log in again) · "
    "4 not found · 130 interrupted."
)


class CliError(Exception):
    """Ends the command with `message` on stderr (and `hint` on the next line) and `code`."""

    code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str | None = None, code: ExitCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code


class UsageProblem(CliError):
    """Options that parse but do not go together."""

    code = ExitCode.USAGE


class NotLoggedIn(CliError):
    code = ExitCode.NOT_LOGGED_IN


class NotFound(CliError):
    code = ExitCode.NOT_FOUND


class ApiError(CliError):
    """The API answered with an error: its `{"error": {"code", "message"}}`, kept for `--json`."""

    def __init__(
        self,
        status: int,
        api_code: str,
        message: str,
        *,
        hint: str | None = None,
        code: ExitCode | None = None,
    ) -> None:
        if code is None:
            code = ExitCode.NOT_FOUND if status == 404 else ExitCode.FAILED
        super().__init__(message, hint=hint, code=code)
        self.status = status
        self.api_code = api_code


class ApiNotFound(ApiError, NotFound):
    """A 404 from the API: catch it as `NotFound`."""
