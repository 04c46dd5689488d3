"""Credits and payments in template.yaml (and the GPU worker stack), checked on the translated template
with the helpers and fixtures of `test_template`: the tables' keys, the immutable ledger no function may
delete from, the order-checks queue, the credentials secret, the allowance and the price list."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from samtranslator.translator.transform import transform

from photopipe.models import parse_packages
from tests.unit.test_template import (
    REGION,
    ROOT,
    TEMPLATE,
    _allowed,
    _BundledPolicies,
    _CfnLoader,
    _find_in_map,
    _function_role_id,
    _logical_ids,
    _of_type,
    _props,
    _role_statements,
)


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass


@pytest.fixture(scope="module")
def cfn(source: dict[str, Any]) -> dict[str, Any]:
    """The template as SAM translates it (as `test_template` does)."""
    template = copy.deepcopy(source)
    for logical_id, resource in template["Resources"].items():
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = f"s3://photopipe-artifacts/{logical_id}.zip"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        return transform(template, {}, _BundledPolicies())


@pytest.fixture(scope="module")
def resources(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return cfn["Resources"]


MONEY_TABLES = ("CreditsTable", "OrdersTable")


def _keys(schema: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in schema]


def test_credits_table_holds_balance_and_ledger_per_user_listed_by_time(resources: dict[str, Any]) -> None:
    table = _props(resources, "CreditsTable")

    assert _keys(table["KeySchema"]) == [("user_id", "HASH"), ("sk", "RANGE")]
    (index,) = table["LocalSecondaryIndexes"]
    assert index["IndexName"] == "by-time"
    assert _keys(index["KeySchema"]) == [("user_id", "HASH"), ("at", "RANGE")]


def test_orders_table_is_keyed_by_order_and_found_by_trade_number(resources: dict[str, Any]) -> None:
    table = _props(resources, "OrdersTable")

    assert _keys(table["KeySchema"]) == [("order_id", "HASH")]
    indexes = {i["IndexName"]: _keys(i["KeySchema"]) for i in table["GlobalSecondaryIndexes"]}
    assert indexes == {
        "by-out-trade-no": [("out_trade_no", "HASH")],
        "by-owner": [("user_id", "HASH"), ("created_at", "RANGE")],
    }


def test_money_tables_are_kept_encrypted_and_recoverable(resources: dict[str, Any]) -> None:
    for table_id in MONEY_TABLES:
        table = resources[table_id]
        assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["SSESpecification"] == {"SSEEnabled": True}
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_no_function_may_delete_or_scan_the_ledger_or_the_orders(resources: dict[str, Any]) -> None:
    for function_id in _of_type(resources, "AWS::Lambda::Function"):
        allowed = _allowed(_role_statements(resources, _function_role_id(resources, function_id)))
        for table in MONEY_TABLES:
            actions = {a for a, r in allowed if f"${{{table}" in r}
            assert not actions & {"dynamodb:DeleteItem", "dynamodb:BatchWriteItem", "dynamodb:Scan"}, (
                function_id,
                table,
                actions,
            )


def test_payments_function_reaches_only_what_order_checks_need(resources: dict[str, Any]) -> None:
    statements = _role_statements(resources, _function_role_id(resources, "PaymentsFunction"))

    referenced = set().union(*(_logical_ids(st["Resource"]) for st in statements))
    assert referenced == {"CreditsTable", "OrdersTable", "OrderChecksQueue", "WechatPaySecret"}
    allowed = _allowed(statements)
    assert {a for a, r in allowed if "WechatPaySecret" in r} == {"secretsmanager:GetSecretValue"}
    assert {a for a, r in allowed if "OrdersTable" in r} == {"dynamodb:GetItem", "dynamodb:UpdateItem"}


def test_order_checks_queue_feeds_the_payments_function_with_partial_failures_and_a_dlq(
    cfn: dict[str, Any], resources: dict[str, Any]
) -> None:
    queue = _props(resources, "OrderChecksQueue")
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["OrderChecksDeadLetterQueue", "Arn"]}
    assert int(_find_in_map(cfn, redrive["maxReceiveCount"])) >= 3
    assert queue["VisibilityTimeout"] >= 6 * _props(resources, "PaymentsFunction")["Timeout"]
    mappings = [
        props
        for res in _of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if (props := res["Properties"])["EventSourceArn"] == {"Fn::GetAtt": ["OrderChecksQueue", "Arn"]}
    ]
    assert len(mappings) == 1
    assert mappings[0]["FunctionName"] == {"Ref": "PaymentsFunction"}
    assert mappings[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    alarms = [
        a["Properties"]
        for a in _of_type(resources, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Dimensions", [{}])[0].get("Value")  # metric-math alarms have none
        == {"Fn::GetAtt": ["OrderChecksDeadLetterQueue", "QueueName"]}
    ]
    assert len(alarms) == 1


def test_wechat_pay_credentials_live_in_a_retained_secret_read_by_reference(
    resources: dict[str, Any],
) -> None:
    secret = resources["WechatPaySecret"]
    assert (secret["DeletionPolicy"], secret["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")
    assert "SecretString" not in secret["Properties"]  # a generated placeholder, never a literal
    assert "GenerateSecretString" in secret["Properties"]
    for function_id in ("ApiFunction", "PaymentsFunction"):
        env = _props(resources, function_id)["Environment"]["Variables"]
        assert env["WECHAT_PAY_SECRET_ID"] == {"Ref": "WechatPaySecret"}
        assert not any("PRIVATE" in name or "APIV3" in name for name in env)


def test_the_allowance_and_the_price_list_are_parameters(
    source: dict[str, Any], resources: dict[str, Any]
) -> None:
    params = source["Parameters"]
    assert params["FreeCredits"]["Default"] == 10
    packages = parse_packages(params["CreditPackages"]["Default"])
    assert {p.package_id: (p.credits, p.amount) for p in packages} == {
        "credits-10": (10, 100),  # 10 credits for ¥1 (100 fen)
        "credits-60": (60, 500),
        "credits-150": (150, 1000),
    }
    assert all(isinstance(p["amount"], int) for p in json.loads(params["CreditPackages"]["Default"]))
    assert params["WechatPayBaseUrl"]["Default"] == "https://api.mch.weixin.qq.com"
    env = _props(resources, "ApiFunction")["Environment"]["Variables"]
    assert env["PHOTOPIPE_FREE_CREDITS"] == {"Ref": "FreeCredits"}
    assert env["PHOTOPIPE_CREDIT_PACKAGES"] == {"Ref": "CreditPackages"}
    assert env["WECHAT_PAY_BASE_URL"] == {"Ref": "WechatPayBaseUrl"}


def test_the_gpu_worker_stack_lets_the_worker_refund_and_nothing_more() -> None:
    stack = yaml.load((ROOT / "infra/gpu-worker/stack.yaml").read_text(), Loader=_CfnLoader)  # noqa: S506
    (container,) = stack["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["CREDITS_TABLE"] == {"Ref": "CreditsTableName"}
    (policy,) = stack["Resources"]["TaskRole"]["Properties"]["Policies"]
    refund = [s for s in policy["PolicyDocument"]["Statement"] if "CreditsTableName" in str(s["Resource"])]
    assert len(refund) == 1
    assert set(refund[0]["Action"]) == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:ConditionCheckItem",
    }
