"""A user account. `admin` (granted with `photopipe admin grant USERNAME`, never through the API) opens
the global statistics; accounts created before the flag existed read as plain users."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class User(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str
    username: str
    email: str
    created_at: str
    admin: bool = False


class UserRecord(User):
    password_hash: str
