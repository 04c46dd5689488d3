"""The `photopipe` command.

Commands come in groups (`photopipe local run`, `photopipe local invoke`, later `photopipe models export`).
A group is a function that adds its sub-parser to `COMMAND_GROUPS`' sub-parsers and sets `handler` on each
leaf command; `main` dispatches to it. Groups import their heavy dependencies inside the handlers, so
`photopipe --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

CommandHandler = Callable[[argparse.Namespace], int]
CommandGroup = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


# ------------------------------------------------------------------------------------------ logging


class KeyValueFormatter(logging.Formatter):
    """`12:00:01 INFO  sqs batch processed function=IngestFunction batch_size=3 failures=0`: the
    structured `extra` keys of a record, readable in a terminal."""

    _STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{key}={value}" for key, value in record.__dict__.items() if key not in self._STANDARD
        )
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<5} {record.getMessage()}"
        if extras:
            line += f"  {extras}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (it may be swapped, e.g. by tests)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure_logging(verbose: bool = False) -> None:
    """The local stack's records (logger `photopipe_local`) go to stderr as `message key=value ...`."""
    handler = _StderrHandler()
    handler.setFormatter(KeyValueFormatter())
    local = logging.getLogger("photopipe_local")
    local.handlers[:] = [handler]
    local.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log


# -------------------------------------------------------------------------------------- local group


def _parameter(value: str) -> tuple[str, str]:
    key, sep, parameter_value = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key, parameter_value


def register_local(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    local = subparsers.add_parser("local", help="run the whole system on this machine (moto on loopback)")
    commands = local.add_subparsers(dest="local_command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="start the local stack and keep it running until Ctrl+C",
        description="Start moto on loopback with the template's resources, serve the HTTP API from the "
        "real handlers (the local API Gateway) and wire the SQS event sources; stop cleanly on Ctrl+C or "
        "SIGTERM.",
    )
    run.add_argument("--template", default="template.yaml", help="SAM template (default: template.yaml)")
    run.add_argument(
        "--port", type=int, default=None, help="HTTP API port (default: $PHOTOPIPE_PORT or 3000)"
    )
    run.add_argument(
        "--moto-port",
        type=int,
        default=None,
        help="moto's port (default: $PHOTOPIPE_MOTO_PORT or a free one)",
    )
    run.add_argument(
        "--moto-process",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run moto as a child process, out of the handlers' GIL (default), or in a thread of this one",
    )
    run.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="execution environments per function, at most (default: $PHOTOPIPE_LOCAL_CONCURRENCY, or one "
        "per CPU core up to 4); the template's MaximumConcurrency lowers it per event source",
    )
    run.add_argument(
        "--parameter",
        type=_parameter,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="template parameter override (repeatable)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="debug logs from the local stack")
    run.set_defaults(handler=_local_run)

    invoke = commands.add_parser(
        "invoke",
        help="invoke one function once on one event, against the running local stack",
        description="Like `sam local invoke -e`: run FUNCTION's handler once on the event, with the running "
        "stack's environment; print the JSON result to stdout (logs go to stderr).",
    )
    invoke.add_argument(
        "function", metavar="FUNCTION", help="logical id in the template, e.g. IngestFunction"
    )
    invoke.add_argument("-e", "--event", required=True, help="event JSON file, or - for stdin")
    invoke.add_argument(
        "--template", default="template.yaml", help="template of the running stack (to find its state file)"
    )
    invoke.add_argument(
        "--state-file", default=None, help="state file (default: .photopipe/local-stack.json)"
    )
    invoke.set_defaults(handler=_local_invoke)


def _local_run(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    from photopipe_cli.local_stack import describe, try_it_command
    from photopipe_local.stack import LocalStack

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    from photopipe_local.resources import ResourceCreationError
    from photopipe_local.runtime import (
        EnvironmentConflictError,
        FunctionLoadError,
        concurrency_from_environment,
        machine_concurrency,
    )
    from photopipe_local.template import TemplateError

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stack = LocalStack(
            args.template,
            port=args.port,
            moto_port=args.moto_port,
            moto_process=args.moto_process,
            concurrency=args.concurrency or concurrency_from_environment(default=machine_concurrency()),
            parameters=dict(args.parameter),
        )
        with stack:
            for line in describe(stack):
                print(line)
            command = try_it_command(stack)
            if command:
                print(f"\nTry it:  {command}")
            print("Press Ctrl+C to stop.", flush=True)
            while not stop.wait(0.5):
                pass
            print("\nStopping the local stack...", flush=True)
    except FunctionLoadError as e:
        # The import-time traceback is what the developer needs.
        logging.getLogger("photopipe_local").error("a handler failed to load", exc_info=e.__cause__ or e)
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (TemplateError, ResourceCreationError, EnvironmentConflictError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("Stopped.", flush=True)
    return 0


def _read_event(source: str) -> Any:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    return json.loads(text)


def _local_invoke(args: argparse.Namespace) -> int:
    configure_logging()
    from photopipe_cli.local_stack import StackNotRunningError, invoke_function, read_state
    from photopipe_local.stack import default_state_file

    try:
        state = read_state(args.state_file or default_state_file(args.template))
    except StackNotRunningError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        event = _read_event(args.event)
    except (OSError, ValueError) as e:
        print(f"error: cannot read the event {args.event}: {e}", file=sys.stderr)
        return 2
    if args.function not in state.functions:
        known = ", ".join(sorted(state.functions)) or "none"
        print(
            f"error: no function {args.function!r} in the running stack (functions: {known})", file=sys.stderr
        )
        return 2

    # The handler's own logs (Powertools writes to stdout) go to stderr: stdout carries only the result.
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        result = invoke_function(state, args.function, event)
    except Exception as e:
        # The handler's failure is the command's result: report it the way Lambda does and exit non-zero.
        logging.getLogger("photopipe_local.invoke").exception("the handler raised")
        print(json.dumps({"errorType": type(e).__name__, "errorMessage": str(e)}), file=sys.stderr)
        return 1
    finally:
        sys.stdout = real_stdout
    try:
        print(json.dumps(result, indent=2))
    except TypeError as e:
        print(
            f"error: the handler returned a value that is not JSON (Lambda would fail too): {e}",
            file=sys.stderr,
        )
        return 1
    return 0


# ------------------------------------------------------------------------------------- models group


def register_models(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = subparsers.add_parser("models", help="export and manage the enhancement models")
    commands = models.add_subparsers(dest="models_command", metavar="COMMAND", required=True)
    export = commands.add_parser(
        "export",
        help="export GFPGAN (v1.3/v1.4 .pth) to ONNX fp32 + fp16 with a sha256 manifest",
        description="Load the official GFPGANv1Clean weights (params_ema, strict) and write "
        "OUT/gfpgan_fp32.onnx, OUT/gfpgan_fp16.onnx (float16 input/output) and OUT/manifest.json. "
        "Needs torch: pip install 'photopipe[export]'.",
    )
    source = export.add_mutually_exclusive_group()
    source.add_argument("--weights", type=Path, help="GFPGANv1.4.pth (or v1.3) from TencentARC's releases")
    source.add_argument(
        "--random",
        action="store_true",
        help="no weights: the architecture with seeded random weights (implied by --reduced without --weights)",
    )
    export.add_argument("--out", type=Path, required=True, help="output directory")
    export.add_argument(
        "--reduced", action="store_true", help="a small configuration of the architecture (tests)"
    )
    export.add_argument("--seed", type=int, default=0, help="seed of the random weights (without --weights)")
    export.add_argument("--no-fp16", action="store_true", help="write the fp32 file only")
    export.set_defaults(handler=_models_export)


def _models_export(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        import torch  # noqa: F401
    except ImportError:
        print(
            "error: exporting needs torch: install the export extra: pip install 'photopipe[export]'",
            file=sys.stderr,
        )
        return 2
    from photopipe_export.arch import FULL, REDUCED
    from photopipe_export.export import export_gfpgan

    if args.weights is None and not (args.random or args.reduced):
        print("error: give --weights GFPGANv1.4.pth (or --random for seeded random weights)", file=sys.stderr)
        return 2
    if args.weights is not None and not args.weights.is_file():
        print(f"error: no such weights file: {args.weights}", file=sys.stderr)
        return 2
    try:
        manifest = export_gfpgan(
            args.weights,
            args.out,
            config=REDUCED if args.reduced else FULL,
            seed=args.seed,
            fp16=not args.no_fp16,
        )
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for entry in manifest.files:
        print(f"{args.out / entry.path}  {entry.precision}  {entry.bytes} bytes  sha256 {entry.sha256}")
    print(f"{args.out / 'manifest.json'}")
    return 0


# ---------------------------------------------------------------------------------------------- main

COMMAND_GROUPS: list[CommandGroup] = [register_local, register_models]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="photopipe", description="photopipe: serverless photo pipeline tools"
    )
    groups = parser.add_subparsers(dest="group", metavar="GROUP", required=True)
    for register in COMMAND_GROUPS:
        register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: CommandHandler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
