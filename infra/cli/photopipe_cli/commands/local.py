"""`photopipe local run|invoke`: the whole system on this machine (moto on loopback)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from photopipe_cli.options import JsonOption

local = typer.Typer(
    help="Run the whole system on this machine. moto on loopback, the real handlers, the SQS wiring.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(local, name="local")


def _parameters(values: list[str] | None) -> list[tuple[str, str]]:
    pairs = []
    for value in values or []:
        key, sep, parameter_value = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {value!r}")
        pairs.append((key, parameter_value))
    return pairs


@local.command("run")
def run(
    template: Annotated[str, typer.Option(help="SAM template.")] = "template.yaml",
    port: Annotated[
        int | None, typer.Option(help="HTTP API port (default: $PHOTOPIPE_PORT or 3000).", show_default=False)
    ] = None,
    moto_port: Annotated[
        int | None,
        typer.Option(help="moto's port (default: $PHOTOPIPE_MOTO_PORT or a free one).", show_default=False),
    ] = None,
    moto_process: Annotated[
        bool,
        typer.Option(
            "--moto-process/--no-moto-process",
            help="Run moto as a child process, out of the handlers' GIL, or in a thread of this one.",
        ),
    ] = True,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Execution environments per function, at most (default: $PHOTOPIPE_LOCAL_CONCURRENCY, or "
            "one per CPU core up to 4); the template's MaximumConcurrency lowers it per event source.",
            show_default=False,
        ),
    ] = None,
    parameter: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY=VALUE", callback=_parameters, help="Template parameter override (repeatable)."
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Debug logs from the local stack.")
    ] = False,
    json_: JsonOption = False,
) -> None:
    """Start the local stack and keep it running until Ctrl+C.

    Starts moto on loopback with the template's resources, serves the HTTP API from the real handlers
    and wires the SQS event sources; stops cleanly on Ctrl+C or SIGTERM. With --json, one JSON object
    (api_url, endpoint, state_file) is printed once the stack is up."""
    import logging
    import signal
    import sys
    import threading
    from types import FrameType

    from photopipe_cli.logs import configure_logging

    configure_logging(verbose)
    from photopipe_cli.local_stack import describe, try_it_command
    from photopipe_local.resources import ResourceCreationError
    from photopipe_local.runtime import (
        EnvironmentConflictError,
        FunctionLoadError,
        concurrency_from_environment,
        machine_concurrency,
    )
    from photopipe_local.stack import LocalStack
    from photopipe_local.template import TemplateError

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # the human lines go to stderr with --json, so that stdout carries the JSON object only
    say = (
        (lambda line: print(line, file=sys.stderr, flush=True))
        if json_
        else (lambda line: print(line, flush=True))
    )
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stack = LocalStack(
            template,
            port=port,
            moto_port=moto_port,
            moto_process=moto_process,
            concurrency=concurrency or concurrency_from_environment(default=machine_concurrency()),
            parameters=dict(cast(list[tuple[str, str]], parameter or [])),
        )
        with stack:
            for line in describe(stack):
                say(line)
            command = try_it_command(stack)
            if command:
                say(f"\nTry it:  {command}")
            if json_:
                print(
                    json.dumps(
                        {
                            "api_url": stack.api_url,
                            "endpoint": stack.endpoint,
                            "state_file": str(stack.state_file) if stack.state_file else None,
                        }
                    ),
                    flush=True,
                )
            say("Press Ctrl+C to stop.")
            while not stop.wait(0.5):
                pass
            say("\nStopping the local stack...")
    except FunctionLoadError as e:
        # The import-time traceback is what the developer needs.
        logging.getLogger("photopipe_local").error("a handler failed to load", exc_info=e.__cause__ or e)
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(1) from None
    except (TemplateError, ResourceCreationError, EnvironmentConflictError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(1) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say("Stopped.")


def _read_event(source: str) -> Any:
    import sys

    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    return json.loads(text)


@local.command("invoke")
def invoke(
    function: Annotated[
        str, typer.Argument(metavar="FUNCTION", help="Logical id in the template, e.g. IngestFunction.")
    ],
    event: Annotated[str, typer.Option("-e", "--event", help="Event JSON file, or - for stdin.")],
    template: Annotated[
        str, typer.Option(help="Template of the running stack (to find its state file).")
    ] = "template.yaml",
    state_file: Annotated[
        str | None,
        typer.Option(help="State file (default: .photopipe/local-stack.json).", show_default=False),
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Invoke one function once on one event, against the running local stack.

    Like `sam local invoke -e`: runs FUNCTION's handler once on the event, with the running stack's
    environment, and prints the JSON result on stdout (logs go to stderr; the result is always JSON,
    --json is accepted for uniformity)."""
    import logging
    import sys

    from photopipe_cli.logs import configure_logging

    configure_logging()
    from photopipe_cli.local_stack import StackNotRunningError, invoke_function, read_state
    from photopipe_local.stack import default_state_file

    try:
        state = read_state(state_file or default_state_file(template))
    except StackNotRunningError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(1) from None
    try:
        payload = _read_event(event)
    except (OSError, ValueError) as e:
        print(f"error: cannot read the event {event}: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    if function not in state.functions:
        known = ", ".join(sorted(state.functions)) or "none"
        print(f"error: no function {function!r} in the running stack (functions: {known})", file=sys.stderr)
        raise typer.Exit(2)

    # The handler's own logs (Powertools writes to stdout) go to stderr: stdout carries only the result.
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        result = invoke_function(state, function, payload)
    except Exception as e:
        # The handler's failure is the command's result: report it the way Lambda does and exit non-zero.
        logging.getLogger("photopipe_local.invoke").exception("the handler raised")
        print(json.dumps({"errorType": type(e).__name__, "errorMessage": str(e)}), file=sys.stderr)
        raise typer.Exit(1) from None
    finally:
        sys.stdout = real_stdout
    try:
        print(json.dumps(result, indent=2))
    except TypeError as e:
        print(
            f"error: the handler returned a value that is not JSON (Lambda would fail too): {e}",
            file=sys.stderr,
        )
        raise typer.Exit(1) from None
