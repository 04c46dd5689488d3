"""What every user command starts from: how to print (`Ui`), which server, which token."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from photopipe_cli.settings import Credential, Server, credential, resolve_server
from photopipe_cli.ui import Ui

if TYPE_CHECKING:
    from photopipe_cli.api import Api
    from photopipe_cli.journal import Journal


class Ctx:
    def __init__(self, *, api: str | None, json_mode: bool) -> None:
        self.ui = Ui(json_mode=json_mode)
        self._api_flag = api

    @cached_property
    def server(self) -> Server:
        return resolve_server(self._api_flag)

    @cached_property
    def credential(self) -> Credential | None:
        return credential(self.server)

    def client(self, *, pool_size: int = 10) -> Api:
        from photopipe_cli.api import Api

        return Api(self.server, self.credential, pool_size=pool_size)

    def user_id(self, api: Api) -> str:
        """The logged-in user's id (from the saved login, else asked of the server once)."""
        cred = api.require_login()
        if cred.login and cred.login.user_id:
            return cred.login.user_id
        profile = api.get("/profile")
        return str(profile["user"]["user_id"])

    def journal(self) -> Journal:
        from photopipe_cli.journal import Journal

        return Journal.open_default()
