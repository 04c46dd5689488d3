"""A user account."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class User(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str
    username: str
    email: str
    created_at: str


class UserRecord(User):
    password_hash: str
