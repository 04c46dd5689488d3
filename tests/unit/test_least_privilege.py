"""Least privilege, as a table: every function's grants in the translated template are exactly the calls its
code makes - action by action, resource by resource, the prefixes it may list included. A new call needs a
line here and a grant in template.yaml; a grant no call needs fails this test. (AWS enforces IAM and moto
does not, so this is where a missing or excess grant shows before a deployment.)"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.template_support import translated_template
from tests.unit.test_template import (
    ALLOWED_MANAGED_POLICIES,
    _allowed,
    _as_list,
    _function_role_id,
    _props,
    _role_statements,
)


def _table(name: str, index: str | None = None) -> str:
    arn = f"arn:${{AWS::Partition}}:dynamodb:${{AWS::Region}}:${{AWS::AccountId}}:table/${{{name}}}"
    return f"{arn}/index/{index}" if index else arn


def _objects(prefix: str) -> str:
    return f"arn:${{AWS::Partition}}:s3:::${{MediaBucket}}/{prefix}/*"


def _queue(name: str) -> str:
    return f"arn:${{AWS::Partition}}:sqs:${{AWS::Region}}:${{AWS::AccountId}}:${{{name}.QueueName}}"


BUCKET = "arn:${AWS::Partition}:s3:::${MediaBucket}"
GET, PUT, UPDATE, DELETE, QUERY, CHECK = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:ConditionCheckItem",
)

# function -> {(action, resource): the call that needs it}
EXPECTED: dict[str, dict[tuple[str, str], str]] = {
    "ApiFunction": {
        (GET, _table("UsersTable")): "login and profile read a user (and a username or email guard)",
        (PUT, _table("UsersTable")): "register: one transaction of three conditional puts",
        (UPDATE, _table("UsersTable")): "/auth/wechat: the user's openid (in the link's transaction)",
        (DELETE, _table("UsersTable")): "/auth/wechat: a previous openid's link",
        (GET, _table("SessionsTable")): "a refresh token and its session",
        (PUT, _table("SessionsTable")): "login: the session and its first refresh token; a refresh: the next",
        (UPDATE, _table("SessionsTable")): "a refresh spends the token; logout and reuse revoke the session",
        (GET, _table("LimitsTable")): "usage: uploads today, stored bytes, job slots",
        (UPDATE, _table("LimitsTable")): "quota counters and login attempts (conditional ADDs)",
        ("dynamodb:BatchGetItem", _table("JobsTable")): "the job-slot quota reads its holders' states",
        (GET, _table("ImagesTable")): "a photo, its classification, what an enhancement starts from",
        (PUT, _table("ImagesTable")): "POST /uploads creates the pending record",
        (DELETE, _table("ImagesTable")): "DELETE /images/{id}",
        ("dynamodb:BatchGetItem", _table("ImagesTable")): "batch delete reads the records in one call",
        ("dynamodb:BatchWriteItem", _table("ImagesTable")): "batch delete removes them 25 a call",
        (QUERY, _table("ImagesTable", "by-owner")): "GET /images lists the caller's photos",
        (GET, _table("ClassificationCacheTable")): "the cache pre-check: the exact item",
        (QUERY, _table("ClassificationCacheTable")): "the cache pre-check: near-duplicate bands",
        ("dynamodb:BatchGetItem", _table("StatsTable")): "the statistics read their days",
        (GET, _table("JobsTable")): "a job's status, download, cancel",
        (PUT, _table("JobsTable")): "submit",
        (UPDATE, _table("JobsTable")): "cancel; a job that could not be queued; clearing a failed export",
        (DELETE, _table("JobsTable")): "deleting a finished job",
        (QUERY, _table("JobsTable", "by-batch")): "a batch's jobs",
        (PUT, _table("WorkersTable")): "/webhook/register",
        (DELETE, _table("WorkersTable")): "/webhook/unregister",
        ("dynamodb:Scan", _table("WorkersTable")): "/health, /webhook/servers, POST /enhance: the fleet",
        ("s3:GetObject", _objects("originals")): "presigned links to originals",
        ("s3:GetObject", _objects("derived")): "... thumbnails and previews",
        ("s3:GetObject", _objects("enhanced")): "... enhanced results",
        ("s3:GetObject", _objects("exports")): "... batch ZIPs (and the HEAD that asks if one exists)",
        ("s3:ListBucket", BUCKET): "deleting a photo's or a job's objects; 404 for a missing ZIP",
        ("s3:PutObject", _objects("originals")): "the presigned upload POST",
        ("s3:DeleteObject", _objects("originals")): "deleting a photo",
        ("s3:DeleteObject", _objects("derived")): "... and its renditions",
        ("s3:DeleteObject", _objects("enhanced")): "deleting a finished job's result",
        ("sqs:SendMessage*", _queue("GpuJobsQueue")): "submit",
        ("sqs:SendMessage*", _queue("ExportsQueue")): "a batch's ZIP is asked for",
        ("secretsmanager:GetSecretValue", "${JwtSecret}"): "signing and checking tokens",
        ("secretsmanager:GetSecretValue", "${FleetSecret}"): "the /webhook routes' shared secret",
        (
            "ssm:GetParameter",
            "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/photopipe/gpu-fleet/"
            "${GpuJobsQueue.QueueName}",
        ): "is a GPU fleet that scales from zero deployed?",
        (GET, _table("CreditsTable")): "the balance and a reservation (credits)",
        (PUT, _table("CreditsTable")): "a ledger entry, in the transaction that moves the balance",
        (UPDATE, _table("CreditsTable")): "the balance, conditionally (never negative)",
        (CHECK, _table("CreditsTable")): "a refund checks the job's reservation in its transaction",
        (QUERY, _table("CreditsTable", "by-time")): "GET /credits lists the ledger, newest first",
        (GET, _table("OrdersTable")): "an order's state",
        ("dynamodb:BatchGetItem", _table("OrdersTable")): "the payment statistics read their days",
        (PUT, _table("OrdersTable")): "POST /payments/orders (with the day's counter, one transaction)",
        (UPDATE, _table("OrdersTable")): "a verified notify marks the order paid, once",
        (QUERY, _table("OrdersTable", "by-out-trade-no")): "the notify names the order by out_trade_no",
        ("sqs:SendMessage*", _queue("OrderChecksQueue")): "an order's first check, 15 minutes on",
        ("secretsmanager:GetSecretValue", "${WechatPaySecret}"): "the merchant's keys",
    },
    "PaymentsFunction": {
        (GET, _table("OrdersTable")): "the order an order check is about",
        (UPDATE, _table("OrdersTable")): "paid (a lost notify) or closed after 2 hours",
        (GET, _table("CreditsTable")): "the buyer's balance",
        (PUT, _table("CreditsTable")): "the purchase entry",
        (UPDATE, _table("CreditsTable")): "the balance",
        (CHECK, _table("CreditsTable")): "... in one conditional transaction",
        ("sqs:SendMessage*", _queue("OrderChecksQueue")): "the next check of a pending order",
        ("secretsmanager:GetSecretValue", "${WechatPaySecret}"): "the merchant's keys (order query, close)",
    },
    "IngestFunction": {
        ("s3:GetObject", _objects("originals")): "the upload",
        ("s3:ListBucket", BUCKET): "an original removed before ingest reads as missing, not forbidden",
        ("s3:PutObject", _objects("derived")): "thumbnail and preview",
        (GET, _table("ImagesTable")): "the record",
        (UPDATE, _table("ImagesTable")): "its state transitions",
        (GET, _table("IdempotencyTable")): "Powertools idempotency",
        (PUT, _table("IdempotencyTable")): "...",
        (UPDATE, _table("IdempotencyTable")): "...",
        (DELETE, _table("IdempotencyTable")): "... (after a failure)",
        ("sqs:SendMessage*", _queue("ClassifyQueue")): "hand the photo to classification",
        (UPDATE, _table("LimitsTable")): "the upload's real size charged to its owner's storage quota",
    },
    "ClassifyFunction": {
        ("s3:GetObject", _objects("derived")): "the preview the model sees",
        (GET, _table("ImagesTable")): "the record",
        (UPDATE, _table("ImagesTable")): "its classification",
        (GET, _table("ClassificationCacheTable")): "exact hit; waiting for another delivery's answer",
        (QUERY, _table("ClassificationCacheTable")): "near-duplicate bands",
        (PUT, _table("ClassificationCacheTable")): "the single-flight lock",
        (DELETE, _table("ClassificationCacheTable")): "releasing it",
        ("dynamodb:BatchWriteItem", _table("ClassificationCacheTable")): "a result and its bands",
        (UPDATE, _table("ClassificationCacheTable")): "the hit counter",
        (UPDATE, _table("StatsTable")): "daily counters (ADD)",
        (PUT, _table("StatsTable")): "distinct-user markers",
        (
            "secretsmanager:GetSecretValue",
            "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
            "${DashScopeApiKeySecretName}-??????",
        ): "the DashScope key, when a secret is named",
        (
            "secretsmanager:GetSecretValue",
            "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
            "${OpenAIApiKeySecretName}-??????",
        ): "the OpenAI-compatible key, when a secret is named",
    },
    "ClassifyApiFunction": {
        (GET, _table("ClassificationCacheTable")): "exact hit; waiting for another request's answer",
        (QUERY, _table("ClassificationCacheTable")): "near-duplicate bands",
        (PUT, _table("ClassificationCacheTable")): "the single-flight lock",
        (DELETE, _table("ClassificationCacheTable")): "releasing it",
        ("dynamodb:BatchWriteItem", _table("ClassificationCacheTable")): "a result and its bands",
        (UPDATE, _table("ClassificationCacheTable")): "the hit counter",
        (UPDATE, _table("StatsTable")): "daily counters (ADD)",
        (PUT, _table("StatsTable")): "distinct-user markers",
        ("secretsmanager:GetSecretValue", "${JwtSecret}"): "checking the caller's token",
        (
            "secretsmanager:GetSecretValue",
            "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
            "${DashScopeApiKeySecretName}-??????",
        ): "the DashScope key, when a secret is named",
        (
            "secretsmanager:GetSecretValue",
            "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
            "${OpenAIApiKeySecretName}-??????",
        ): "the OpenAI-compatible key, when a secret is named",
    },
    "ExportsFunction": {
        ("s3:GetObject", _objects("enhanced")): "the results copied into the ZIP",
        ("s3:GetObject", _objects("exports")): "does the ZIP exist already (HEAD)",
        ("s3:ListBucket", BUCKET): "... a missing one is a 404 only with list rights",
        ("s3:PutObject", _objects("exports")): "the multipart upload of the ZIP",
        ("s3:AbortMultipartUpload", _objects("exports")): "no partial ZIP after a failure",
        (QUERY, _table("JobsTable", "by-batch")): "the batch's jobs",
    },
    "DeadLetterFunction": {
        (GET, _table("ImagesTable")): "the image of an ingest or classify dead letter",
        (UPDATE, _table("ImagesTable")): "marking it failed",
        (GET, _table("JobsTable")): "the job of a gpu-jobs dead letter",
        (UPDATE, _table("JobsTable")): "marking it (or an export's jobs) failed",
        (QUERY, _table("JobsTable", "by-batch")): "an export's jobs",
        (GET, _table("CreditsTable")): "a failed job's reservation",
        (PUT, _table("CreditsTable")): "its refund entry",
        (UPDATE, _table("CreditsTable")): "the balance given back",
        (CHECK, _table("CreditsTable")): "the reservation checked in the refund's transaction",
    },
    "WebSocketAuthorizerFunction": {
        ("secretsmanager:GetSecretValue", "${JwtSecret}"): "checking the token on $connect",
    },
    "WebSocketConnectionsFunction": {
        (PUT, _table("ConnectionsTable")): "$connect records the connection",
        (DELETE, _table("ConnectionsTable")): "$disconnect forgets it",
    },
    "NotifyFunction": {
        (QUERY, _table("ConnectionsTable", "by-user")): "the owner's open connections",
        (DELETE, _table("ConnectionsTable")): "forgetting a connection that is gone (410)",
        (
            "execute-api:ManageConnections",
            "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/${WebSocketStage}"
            "/POST/@connections/*",
        ): "posting a message to a connection, on this stage only",
        ("sqs:SendMessage", "${NotifyDeadLetterQueue.Arn}"): "the stream mappings' on-failure destination",
    },
}

# The prefixes each function may list (s3:ListBucket is granted on the bucket, scoped by s3:prefix).
LISTED_PREFIXES = {
    "ApiFunction": {"originals/*", "derived/*", "enhanced/*", "exports/*"},
    "IngestFunction": {"originals/*"},
    "ExportsFunction": {"exports/*"},
}


@pytest.fixture(scope="module")
def resources() -> dict[str, dict[str, Any]]:
    return translated_template()["Resources"]


def _statements(resources: dict[str, Any], function_id: str) -> list[dict[str, Any]]:
    return _role_statements(resources, _function_role_id(resources, function_id))


def test_every_function_is_in_the_table(resources: dict[str, Any]) -> None:
    functions = {lid for lid, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}

    assert functions == set(EXPECTED)


@pytest.mark.parametrize("function_id", sorted(EXPECTED))
def test_grants_are_exactly_the_calls_the_function_makes(resources: dict[str, Any], function_id: str) -> None:
    granted = set(_allowed(_statements(resources, function_id)))

    assert sorted(granted - set(EXPECTED[function_id])) == [], "granted, but no call needs it"
    assert sorted(set(EXPECTED[function_id]) - granted) == [], "a call the role does not allow"


@pytest.mark.parametrize("function_id", sorted(EXPECTED))
def test_listing_is_scoped_to_the_prefixes_the_function_reads(
    resources: dict[str, Any], function_id: str
) -> None:
    listing = [st for st in _statements(resources, function_id) if "s3:ListBucket" in _as_list(st["Action"])]

    prefixes = {p for st in listing for p in _as_list(st["Condition"]["StringLike"]["s3:prefix"])}

    assert prefixes == LISTED_PREFIXES.get(function_id, set())
    assert all(set(st["Condition"]) == {"StringLike"} for st in listing)


@pytest.mark.parametrize("function_id", sorted(EXPECTED))
def test_only_the_managed_policies_sam_attaches(resources: dict[str, Any], function_id: str) -> None:
    role = _props(resources, _function_role_id(resources, function_id))

    assert set(role.get("ManagedPolicyArns", [])) <= ALLOWED_MANAGED_POLICIES


def test_no_function_reads_the_whole_bucket_or_crud_on_a_table(resources: dict[str, Any]) -> None:
    # what SAM's S3ReadPolicy / DynamoDBCrudPolicy would have granted
    broad = {
        (function_id, action, resource)
        for function_id in EXPECTED
        for action, resource in _allowed(_statements(resources, function_id))
        if resource == f"{BUCKET}/*"
        or action == "dynamodb:DescribeTable"
        # a transaction's condition check only where a refund checks its reservation
        or (action == CHECK and resource != _table("CreditsTable"))
        or resource.endswith("/index/*")
    }

    assert broad == set()
