"""Lambda emulation without a network: SQS records, partial batch responses, environment, handlers."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from photopipe_local.runtime import (
    EnvironmentConflictError,
    FunctionLoadError,
    LambdaContext,
    LocalFunction,
    failed_message_ids,
    functions_environment,
    local_environment,
    patched_environ,
    sqs_record,
)
from photopipe_local.template import FunctionSpec

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:work"


def spec(logical_id: str = "Fn", code_uri: Path = Path("."), **environment: str) -> FunctionSpec:
    return FunctionSpec(
        logical_id=logical_id,
        name=f"stack-{logical_id.lower()}",
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:stack-{logical_id.lower()}",
        code_uri=code_uri,
        handler="app.handler",
        runtime="python3.12",
        timeout=15,
        memory_size=256,
        environment=environment,
    )


def test_sqs_message_becomes_a_lambda_record() -> None:
    record = sqs_record(
        {
            "MessageId": "m-1",
            "ReceiptHandle": "rh-1",
            "MD5OfBody": "md5",
            "Body": "hello",
            "Attributes": {
                "SenderId": "AIDA",
                "SentTimestamp": "1",
                "ApproximateReceiveCount": "2",
                "ApproximateFirstReceiveTimestamp": "3",
            },
            "MD5OfMessageAttributes": "md5attrs",
            "MessageAttributes": {
                "kind": {"StringValue": "photo", "DataType": "String"},
                "raw": {"BinaryValue": b"\x00\x01", "DataType": "Binary"},
            },
        },
        queue_arn=QUEUE_ARN,
        region="us-east-1",
    )
    assert record == {
        "messageId": "m-1",
        "receiptHandle": "rh-1",
        "body": "hello",
        "attributes": {
            "SenderId": "AIDA",
            "SentTimestamp": "1",
            "ApproximateReceiveCount": "2",
            "ApproximateFirstReceiveTimestamp": "3",
        },
        "messageAttributes": {
            "kind": {
                "stringValue": "photo",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            },
            "raw": {
                "binaryValue": "AAE=",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "Binary",
            },
        },
        "md5OfBody": "md5",
        "md5OfMessageAttributes": "md5attrs",
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "us-east-1",
    }


@pytest.mark.parametrize(
    ("response", "failed", "whole_batch"),
    [
        (None, set(), False),
        ({}, set(), False),
        ({"batchItemFailures": None}, set(), False),
        ({"batchItemFailures": []}, set(), False),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}, False),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"a", "b", "c"}, True),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, {"a", "b", "c"}, True),
        ({"batchItemFailures": [{"id": "b"}]}, {"a", "b", "c"}, True),
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, {"a", "b", "c"}, True),
        ({"batchItemFailures": "b"}, {"a", "b", "c"}, True),
    ],
)
def test_partial_batch_responses_are_read_like_lambda(
    response: object, failed: set[str], whole_batch: bool
) -> None:
    ids, problem = failed_message_ids(response, ["a", "b", "c"])
    assert ids == failed
    assert (problem is not None) is whole_batch


def test_environment_union_rejects_conflicting_values() -> None:
    assert functions_environment([spec("A", X="1", Y="2"), spec("B", X="1", Z="3")]) == {
        "X": "1",
        "Y": "2",
        "Z": "3",
    }
    with pytest.raises(EnvironmentConflictError, match=r"X is '1' in A but '2' in B"):
        functions_environment([spec("A", X="1"), spec("B", X="2")])


def test_local_environment_points_boto3_at_the_endpoint() -> None:
    environment = local_environment(
        endpoint="http://127.0.0.1:5555",
        region="eu-west-1",
        functions=[spec(TABLE="t", POWERTOOLS_TRACE_DISABLED="false")],
        overrides={"EXTRA": "1"},
    )
    assert environment["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5555"
    assert environment["AWS_DEFAULT_REGION"] == environment["AWS_REGION"] == "eu-west-1"
    assert environment["AWS_ACCESS_KEY_ID"] == environment["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert environment["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert environment["POWERTOOLS_METRICS_NAMESPACE"]
    assert environment["TABLE"] == "t"
    assert environment["EXTRA"] == "1"


def test_patched_environ_removes_interfering_variables_and_restores_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POWERTOOLS_DEV", "1")
    monkeypatch.setenv("AWS_PROFILE", "prod")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://elsewhere")
    monkeypatch.setenv("TABLE", "before")
    monkeypatch.delenv("NEW_ONE", raising=False)
    with patched_environ({"TABLE": "during", "NEW_ONE": "x"}):
        assert os.environ["TABLE"] == "during"
        assert os.environ["NEW_ONE"] == "x"
        for removed in ("POWERTOOLS_DEV", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3"):
            assert removed not in os.environ
    assert os.environ["TABLE"] == "before"
    assert "NEW_ONE" not in os.environ
    assert os.environ["POWERTOOLS_DEV"] == "1"
    assert os.environ["AWS_ENDPOINT_URL_S3"] == "http://elsewhere"


def test_context_looks_like_lambdas() -> None:
    context = LambdaContext(spec())
    assert context.function_name == "stack-fn"
    assert context.memory_limit_in_mb == 256
    assert context.invoked_function_arn.endswith(":function:stack-fn")
    assert context.log_group_name == "/aws/lambda/stack-fn"
    assert len(context.aws_request_id) == 36
    assert 14_000 < context.get_remaining_time_in_millis() <= 15_000


def test_handlers_load_under_a_name_per_function_and_see_the_environment(tmp_path: Path) -> None:
    # GIVEN two functions whose handler modules are both called app.py
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "app.py").write_text(
            textwrap.dedent(
                f"""
                import os
                TABLE = os.environ["TABLE"]  # read at import time, as settings often are

                def handler(event, context):
                    request = context.aws_request_id
                    return {{"fn": "{name}", "table": TABLE, "module": __name__, "request": request}}
                """
            )
        )
    with patched_environ({"TABLE": "images"}):
        one = LocalFunction.load(spec("One", tmp_path / "one"))
        two = LocalFunction.load(spec("Two", tmp_path / "two"))
    result_one = one.invoke({}, request_id="r-1")
    result_two = two.invoke({})
    assert result_one == {"fn": "one", "table": "images", "module": "photopipe_fn_One", "request": "r-1"}
    assert result_two["fn"] == "two"
    assert result_two["module"] == "photopipe_fn_Two"


def test_a_broken_handler_module_names_the_function(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import helpers\n")
    (tmp_path / "helpers.py").write_text("X = 1\n")
    with pytest.raises(FunctionLoadError, match=r"Fn: importing .*app.py failed.*helpers.py sits next"):
        LocalFunction.load(spec("Fn", tmp_path))
    (tmp_path / "app.py").write_text("raise KeyError('SETTING')\n")
    with pytest.raises(FunctionLoadError, match=r"KeyError: 'SETTING'"):
        LocalFunction.load(spec("Fn", tmp_path))
    with pytest.raises(FunctionLoadError, match="does not exist"):
        LocalFunction.load(spec("Fn", tmp_path / "missing"))


def test_each_environment_runs_one_invocation_at_a_time_and_is_made_on_first_need(tmp_path: Path) -> None:
    # GIVEN a function allowed two environments, whose handler refuses to run twice at once in its module
    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            """
            BUSY = []

            def handler(event, context):
                if BUSY:
                    raise RuntimeError("two invocations at once in one environment")
                BUSY.append(1)
                try:
                    event["together"].wait(timeout=30)  # returns only once both invocations are here
                    return __name__
                finally:
                    BUSY.clear()
            """
        )
    )
    function = LocalFunction.load(spec("Fn", tmp_path), concurrency=2)
    assert function.environments == 1

    # WHEN two invocations arrive together
    together = threading.Barrier(2)
    with ThreadPoolExecutor(2) as pool:
        names = set(pool.map(lambda _: function.invoke({"together": together}), range(2)))

    # THEN each ran in its own environment (its own copy of the module), made when the second one came
    assert names == {"photopipe_fn_Fn", "photopipe_fn_Fn_1"}
    assert not together.broken
    assert function.environments == 2

    # and one at a time, the warm environments are reused rather than new ones made
    one_party = threading.Barrier(1)
    assert {function.invoke({"together": one_party}) for _ in range(3)} <= names
    assert function.environments == 2
    function.unload()
    assert not names & set(sys.modules)
