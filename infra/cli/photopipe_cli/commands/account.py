"""`photopipe register|login|logout|profile`: your account on the server in use."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from photopipe_cli.options import ApiOption, JsonOption

PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of stdin instead of prompting (for scripts).",
    ),
]


def register(app: typer.Typer) -> None:
    app.command("register")(register_account)
    app.command("login")(login)
    app.command("logout")(logout)
    app.command("profile")(profile)


def _ask(ui: Any, label: str, *, option: str, hide: bool = False, confirm: bool = False) -> str:
    from photopipe_cli.errors import UsageProblem

    if not ui.interactive:
        raise UsageProblem(f"{label.lower()} missing: give {option} (there is no terminal to ask on)")
    value = str(typer.prompt(label, hide_input=hide, confirmation_prompt=confirm, err=True))
    return value.strip() if not hide else value


def _password(ui: Any, from_stdin: bool, *, confirm: bool) -> str:
    import sys

    from photopipe_cli.errors import UsageProblem

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageProblem("--password-stdin: stdin had no password on its first line")
        return password
    return _ask(ui, "Password", option="--password-stdin", hide=True, confirm=confirm)


def _save(ctx: Any, session: dict[str, Any]) -> dict[str, Any]:
    from photopipe_cli.settings import SavedLogin, save_login

    login = SavedLogin.from_session(session)
    path = save_login(ctx.server, login)
    return {
        "server": ctx.server.url,
        "user": session["user"],
        "expires_at": login.expires_at,
        "session_expires_at": login.refresh_expires_at,
        "credentials_file": str(path),
    }


def register_account(
    username: Annotated[str | None, typer.Option(help="3-32 letters, digits, '.', '_' or '-'.")] = None,
    email: Annotated[str | None, typer.Option(help="Your email address.")] = None,
    password_stdin: PasswordStdin = False,
    api: ApiOption = None,
    json_: JsonOption = False,
) -> None:
    """Create an account and log in with it.

    Asks for what is not given (the password hidden, twice). The token is saved for this server in
    your config directory, readable by you only."""
    from photopipe_cli.context import Ctx

    ctx = Ctx(api=api, json_mode=json_)
    ui = ctx.ui
    username = username or _ask(ui, "Username", option="--username")
    email = email or _ask(ui, "Email", option="--email")
    password = _password(ui, password_stdin, confirm=True)
    session = ctx.client().post(
        "/auth/register", {"username": username, "email": email, "password": password}, auth=False
    )
    saved = _save(ctx, session)
    if json_:
        ui.emit({k: v for k, v in saved.items() if k != "credentials_file"})
    else:
        ui.success(f"Welcome, {saved['user']['username']}: registered and logged in to {ctx.server.url}.")
        ui.info("Next: photopipe upload PATH...")


def login(
    username: Annotated[
        str | None,
        typer.Argument(metavar="[USERNAME]", help="Your username or email (asked when not given)."),
    ] = None,
    password_stdin: PasswordStdin = False,
    api: ApiOption = None,
    json_: JsonOption = False,
) -> None:
    """Log in and keep the session for this server (file mode 0600).

    The password is asked for with the input hidden, or read from stdin with --password-stdin:
    `pass photopipe | photopipe login ada --password-stdin`."""
    import os

    from photopipe_cli.context import Ctx

    ctx = Ctx(api=api, json_mode=json_)
    ui = ctx.ui
    username = username or _ask(ui, "Username or email", option="USERNAME")
    password = _password(ui, password_stdin, confirm=False)
    session = ctx.client().post("/auth/login", {"username": username, "password": password}, auth=False)
    saved = _save(ctx, session)
    if os.environ.get("PHOTOPIPE_TOKEN"):
        ui.warn("PHOTOPIPE_TOKEN is set and wins over the saved login; unset it to use this one")
    if json_:
        ui.emit({k: v for k, v in saved.items() if k != "credentials_file"})
    else:
        until = (
            f"the session renews itself as you use it; unused, it ends at {saved['session_expires_at']}"
            if saved["session_expires_at"]
            else f"until {saved['expires_at']}"
        )
        ui.success(f"Logged in to {ctx.server.url} as {saved['user']['username']} ({until}).")


def logout(api: ApiOption = None, json_: JsonOption = False) -> None:
    """End your session on the server and forget it here.

    The server revokes the session (its refresh token stops working everywhere), then the saved tokens
    are deleted. If the server cannot be reached the tokens are deleted all the same, with a warning:
    the session then ends on its own when its refresh token expires."""
    import os

    from photopipe_cli.context import Ctx
    from photopipe_cli.errors import CliError
    from photopipe_cli.settings import forget_login, saved_login

    ctx = Ctx(api=api, json_mode=json_)
    login = saved_login(ctx.server)
    revoked, problem = False, None
    if login is not None and login.refresh_token:
        try:
            ctx.client().request(
                "POST", "/auth/logout", auth=False, json={"refresh_token": login.refresh_token}
            )
            revoked = True
        except CliError as e:
            problem = e.message
    removed = forget_login(ctx.server)
    env = bool(os.environ.get("PHOTOPIPE_TOKEN"))
    if json_:
        ctx.ui.emit({"server": ctx.server.url, "logged_out": removed, "revoked": revoked})
    elif removed:
        ctx.ui.success(f"Logged out of {ctx.server.url}" + (": the session is revoked." if revoked else "."))
    else:
        ctx.ui.info(f"You were not logged in to {ctx.server.url}.")
    if problem is not None:
        ctx.ui.warn(
            f"the server did not revoke the session ({problem}); the tokens are forgotten here, and the "
            "session ends on its own when its refresh token expires"
        )
    if env:
        ctx.ui.warn("PHOTOPIPE_TOKEN is still set in your environment: unset it too")


def profile(api: ApiOption = None, json_: JsonOption = False) -> None:
    """Show who you are logged in as."""
    from photopipe_cli.context import Ctx

    ctx = Ctx(api=api, json_mode=json_)
    user = ctx.client().get("/profile")["user"]
    if json_:
        ctx.ui.emit({"server": ctx.server.url, "user": user})
        return
    ctx.ui.fields(
        [
            ("username", user.get("username")),
            ("email", user.get("email")),
            ("user id", user.get("user_id")),
            ("since", user.get("created_at")),
            ("server", ctx.server.url),
        ]
    )
