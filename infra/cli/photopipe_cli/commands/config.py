"""`photopipe config set|unset|show`: the client's own settings."""

from __future__ import annotations

from typing import Annotated

import typer

from photopipe_cli.options import ApiOption, JsonOption

config = typer.Typer(
    help="Show or change the client's settings (the server it talks to).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(config, name="config")


def _key(value: str) -> str:
    from photopipe_cli.settings import CONFIG_KEYS

    if value not in CONFIG_KEYS:
        known = ", ".join(f"{k} ({v})" for k, v in CONFIG_KEYS.items())
        raise typer.BadParameter(f"unknown setting {value!r}; settings: {known}")
    return value


@config.command("set")
def set_(
    key: Annotated[str, typer.Argument(metavar="KEY", callback=_key, help="The setting: api.")],
    value: Annotated[
        str, typer.Argument(metavar="VALUE", help="Its value, e.g. https://photos.example.com.")
    ],
    json_: JsonOption = False,
) -> None:
    """Change a setting, e.g. `photopipe config set api https://abc.execute-api.eu-west-1.amazonaws.com`.

    The server can also be given per command (--api URL) or by PHOTOPIPE_API_URL; both win over this."""
    from photopipe_cli.settings import config_file, normalize_api_url, read_config, write_config
    from photopipe_cli.ui import Ui

    ui = Ui(json_mode=json_)
    values = read_config()
    values[key] = normalize_api_url(value) if key == "api" else value
    write_config(values)
    if json_:
        ui.emit({"key": key, "value": values[key], "file": str(config_file())})
    else:
        ui.success(f"{key} = {values[key]}  (saved in {config_file()})")


@config.command("unset")
def unset(
    key: Annotated[str, typer.Argument(metavar="KEY", callback=_key, help="The setting: api.")],
    json_: JsonOption = False,
) -> None:
    """Go back to a setting's default."""
    from photopipe_cli.settings import config_file, read_config, write_config
    from photopipe_cli.ui import Ui

    ui = Ui(json_mode=json_)
    values = read_config()
    removed = values.pop(key, None) is not None
    if removed:
        write_config(values)
    if json_:
        ui.emit({"key": key, "removed": removed, "file": str(config_file())})
    else:
        ui.info(f"{key} unset" if removed else f"{key} was not set")


@config.command("show")
def show(api: ApiOption = None, json_: JsonOption = False) -> None:
    """Show the server in use and where it comes from, the login, and where the files are."""
    from photopipe_cli.settings import config_file, credential, credentials_file, journal_file, resolve_server
    from photopipe_cli.ui import Ui

    ui = Ui(json_mode=json_)
    server = resolve_server(api)
    cred = credential(server)
    login = None
    if cred is not None:
        login = {
            "source": cred.source,
            "username": cred.login.username if cred.login else None,
            "expires_at": cred.login.expires_at if cred.login else None,
            "session_expires_at": cred.login.refresh_expires_at if cred.login else None,
        }
    data = {
        "api": server.url,
        "api_source": server.source,
        "login": login,
        "config_file": str(config_file()),
        "credentials_file": str(credentials_file()),
        "journal": str(journal_file()),
    }
    if json_:
        ui.emit(data)
        return
    if login is None:
        who = "not logged in (photopipe login)"
    elif cred is not None and cred.source == "PHOTOPIPE_TOKEN":
        who = "token from PHOTOPIPE_TOKEN"
    else:
        until = login["session_expires_at"] or login["expires_at"]
        renews = " (renewed as it is used)" if login["session_expires_at"] else ""
        who = f"{login['username'] or '?'}" + (f", until {until}{renews}" if until else "")
    ui.fields(
        [
            ("api", f"{server.url}  ({server.source})"),
            ("login", who),
            ("config", data["config_file"]),
            ("credentials", data["credentials_file"]),
            ("journal", data["journal"]),
        ]
    )
