"""`photopipe admin grant|revoke USERNAME`: the admin flag on an account (who may read `photopipe stats`).

Operator commands: they write the users table directly (`photopipe.wiring.set_admin`), not through the
API, with the running local stack's environment, or with `--deployed` this shell's (`USERS_TABLE` and
AWS credentials for a real deployment)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from photopipe_cli.options import JsonOption, StateFileOption, TemplateOption

admin = typer.Typer(
    help="Operator commands: the admin flag on an account (admins read the global `photopipe stats`).",
    no_args_is_help=True,
)

Username = Annotated[str, typer.Argument(metavar="USERNAME", help="The account's username.")]
Deployed = Annotated[
    bool,
    typer.Option(
        "--deployed",
        help="Write to a real deployment instead of the local stack: needs USERS_TABLE (the stack's "
        "UsersTable, e.g. photopipe-dev-users) and AWS credentials allowed to update it "
        "(AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_REGION) in the environment.",
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(admin, name="admin")


@admin.command("grant")
def grant(
    username: Username,
    deployed: Deployed = False,
    template: TemplateOption = "template.yaml",
    state_file: StateFileOption = None,
    json_: JsonOption = False,
) -> None:
    """Make USERNAME an admin (the global statistics: `photopipe stats`).

    By default on the running local stack (`make run`; its state file says where its users table is).
    For a real deployment pass --deployed with USERS_TABLE and AWS credentials set in the environment."""
    _set(username, True, deployed=deployed, template=template, state_file=state_file, json_=json_)


@admin.command("revoke")
def revoke(
    username: Username,
    deployed: Deployed = False,
    template: TemplateOption = "template.yaml",
    state_file: StateFileOption = None,
    json_: JsonOption = False,
) -> None:
    """Take the admin flag from USERNAME (it counts at once: the flag is read on every request).

    By default on the running local stack; for a real deployment pass --deployed with USERS_TABLE and AWS
    credentials set in the environment."""
    _set(username, False, deployed=deployed, template=template, state_file=state_file, json_=json_)


def _set(
    username: str, flag: bool, *, deployed: bool, template: str, state_file: str | None, json_: bool
) -> None:
    import contextlib
    import os

    from photopipe_cli.ui import Ui

    ui = Ui(json_mode=json_)
    if deployed:
        env: dict[str, str] = dict(os.environ)
        where = f"table {env.get('USERS_TABLE') or '(USERS_TABLE not set)'}"
        environment: Any = contextlib.nullcontext()
    else:
        from photopipe_cli.local_stack import running_state
        from photopipe_local.runtime import patched_environ

        state = running_state(template, state_file)
        env = state.environment
        where = f"the local stack {state.stack_name}"
        environment = patched_environ(env)  # its moto endpoint and credentials, for boto3
    user = _write(username, flag, env, environment, deployed=deployed)
    if json_:
        ui.emit({"user": user})
        return
    if flag:
        ui.success(f"{user['username']} is an admin on {where}: `photopipe stats` works for them now.")
    else:
        ui.success(f"{user['username']} is no longer an admin on {where}.")


def _write(
    username: str, flag: bool, env: dict[str, str], environment: Any, *, deployed: bool
) -> dict[str, Any]:
    import sys

    from photopipe_cli.errors import CliError, NotFound

    # The package's logs (Powertools writes to stdout, bound when its logger is made) go to stderr:
    # stdout carries only the result.
    real_stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        from photopipe import wiring
        from photopipe.errors import ConfigurationError, NotFoundError

        try:
            with environment:
                return wiring.set_admin(username, flag, env=env).model_dump()
        except NotFoundError:
            raise NotFound(
                f"no user named {username!r}", hint="The username is the one they registered with."
            ) from None
        except ConfigurationError as e:
            hint = "Set USERS_TABLE to the deployment's users table." if deployed else None
            raise CliError(str(e), hint=hint) from None
        except (BotoCoreError, ClientError) as e:
            raise CliError(f"cannot update the users table: {e}") from None
    finally:
        sys.stdout = real_stdout
