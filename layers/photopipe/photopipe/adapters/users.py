"""Users table: one item per user plus one uniqueness guard per username and per email, written in one
transaction so a duplicate is refused without scanning."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from photopipe.adapters.aws import error_code, translate
from photopipe.adapters.dynamo import plain, table
from photopipe.errors import ConflictError, UnauthorizedError
from photopipe.models import UserRecord, WechatLink


def _user_pk(user_id: str) -> str:
    return f"USER#{user_id}"


def _username_pk(username: str) -> str:
    return f"USERNAME#{username.casefold()}"


def _email_pk(email: str) -> str:
    return f"EMAIL#{email.casefold()}"


class UsersRepository:
    def __init__(self, table_name: str, resource: Any | None = None) -> None:
        self._table = table(table_name, resource)
        self._name = table_name

    def create(self, user: UserRecord) -> None:
        absent = "attribute_not_exists(pk)"
        items = [
            {"pk": _user_pk(user.user_id), "kind": "user", **user.model_dump()},
            {"pk": _username_pk(user.username), "kind": "username", "user_id": user.user_id},
            {"pk": _email_pk(user.email), "kind": "email", "user_id": user.user_id},
        ]
        try:
            self._table.meta.client.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": self._name, "Item": item, "ConditionExpression": absent}}
                    for item in items
                ]
            )
        except ClientError as e:
            if error_code(e) == "TransactionCanceledException":
                reasons = [r.get("Code") for r in e.response.get("CancellationReasons", [])]
                if len(reasons) == 3 and reasons[1] == "ConditionalCheckFailed":
                    raise ConflictError(
                        f"the username {user.username!r} is taken; choose another", code="username_taken"
                    ) from e
                if len(reasons) == 3 and reasons[2] == "ConditionalCheckFailed":
                    raise ConflictError(
                        f"an account with the email {user.email!r} already exists; log in instead",
                        code="email_taken",
                    ) from e
            raise translate(e, "creating the user") from e
        except BotoCoreError as e:
            raise translate(e, "creating the user") from e

    def get(self, user_id: str) -> UserRecord | None:
        item = self._get(_user_pk(user_id))
        return UserRecord.model_validate(plain(item)) if item else None

    def set_admin(self, username: str, admin: bool) -> UserRecord | None:
        """Grant or revoke the admin flag of the user with this username; None if there is none."""
        guard = self._get(_username_pk(username))
        if guard is None:
            return None
        try:
            resp = self._table.update_item(
                Key={"pk": _user_pk(guard["user_id"])},
                UpdateExpression="SET #admin = :admin",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#admin": "admin"},
                ExpressionAttributeValues={":admin": admin},
                ReturnValues="ALL_NEW",
            )
        except ClientError as e:
            if error_code(e) == "ConditionalCheckFailedException":
                return None
            raise translate(e, "updating the user") from e
        except BotoCoreError as e:
            raise translate(e, "updating the user") from e
        return UserRecord.model_validate(plain(resp["Attributes"]))

    def find_by_login(self, login: str) -> UserRecord | None:
        """`login` is a username or an email (both case-insensitive)."""
        guard = self._get(_email_pk(login) if "@" in login else _username_pk(login))
        return self.get(guard["user_id"]) if guard else None

    def _get(self, pk: str) -> dict[str, Any] | None:
        try:
            resp = self._table.get_item(Key={"pk": pk}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "reading the users table") from e
        return resp.get("Item")

    # ------------------------------------------------------------------ WeChat identity
    def link_wechat(self, link: WechatLink, appid: str) -> None:
        """Record the user's openid (one account per openid and app: a guard item `WECHAT#<appid>#<openid>`
        written in the same transaction, replacing the user's previous one)."""
        guard = f"WECHAT#{appid}#{link.openid}"
        previous = self.wechat_openid(link.user_id)
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._name,
                    "Item": {"pk": guard, "kind": "wechat", **link.model_dump()},
                    "ConditionExpression": "attribute_not_exists(pk) OR user_id = :me",
                    "ExpressionAttributeValues": {":me": link.user_id},
                }
            },
            {
                "Update": {
                    "TableName": self._name,
                    "Key": {"pk": _user_pk(link.user_id)},
                    "UpdateExpression": "SET wechat_openid = :openid, wechat_linked_at = :at",
                    "ConditionExpression": "attribute_exists(pk)",
                    "ExpressionAttributeValues": {":openid": link.openid, ":at": link.linked_at},
                }
            },
        ]
        if previous and previous != link.openid:
            items.append(
                {
                    "Delete": {
                        "TableName": self._name,
                        "Key": {"pk": f"WECHAT#{appid}#{previous}"},
                        "ConditionExpression": "attribute_not_exists(pk) OR user_id = :me",
                        "ExpressionAttributeValues": {":me": link.user_id},
                    }
                }
            )
        try:
            self._table.meta.client.transact_write_items(TransactItems=items)
        except ClientError as e:
            if error_code(e) == "TransactionCanceledException":
                reasons = [r.get("Code") for r in e.response.get("CancellationReasons", [])]
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    raise ConflictError(
                        "this WeChat account is linked to another photopipe account",
                        code="wechat_linked_elsewhere",
                    ) from e
                if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                    raise UnauthorizedError("this account no longer exists", code="invalid_token") from e
            raise translate(e, "linking the WeChat account") from e
        except BotoCoreError as e:
            raise translate(e, "linking the WeChat account") from e

    def wechat_openid(self, user_id: str) -> str | None:
        item = self._get(_user_pk(user_id))
        value = item.get("wechat_openid") if item else None
        return str(value) if value else None
