"""What a real deployment needs that moto never checks, read from the translated template: it creates on a
new account, a failed first create leaves nothing behind, and a redeploy never meets a leftover bucket."""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest

from photopipe.classification import VisionClassifier
from photopipe.usecases import classify as classify_usecase
from tests.unit.template_support import translated_template
from tests.unit.test_template import _of_type, _props

# The longest region names, both stages: what a bucket name must fit into (63 characters, S3's limit).
LONGEST_REGION = "ap-southeast-2"
STACK_ID = "arn:aws:cloudformation:{region}:123456789012:stack/photopipe-{stage}/{uuid}"


def _evaluate(value: Any, pseudo: dict[str, str], parameters: dict[str, str]) -> Any:
    """The few intrinsics a name is built from (Sub, Select, Split, Ref), evaluated for given values."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            return pseudo.get(arg, parameters.get(arg))
        if key == "Fn::Select":
            index, items = arg
            return _evaluate(items, pseudo, parameters)[int(index)]
        if key == "Fn::Split":
            delimiter, text = arg
            return str(_evaluate(text, pseudo, parameters)).split(delimiter)
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else arg
            values = {
                **pseudo,
                **parameters,
                **{k: _evaluate(v, pseudo, parameters) for k, v in variables.items()},
            }

            def replace(match: re.Match[str]) -> str:
                return str(values[match.group(1)])

            return re.sub(r"\$\{([A-Za-z0-9:]+)\}", replace, text)
    return value


def _bucket_name(resources: dict[str, Any], *, region: str, stage: str, uuid: str) -> str:
    pseudo = {
        "AWS::StackId": STACK_ID.format(region=region, stage=stage, uuid=uuid),
        "AWS::AccountId": "123456789012",
        "AWS::Region": region,
        "AWS::Partition": "aws",
    }
    return str(_evaluate(_props(resources, "MediaBucket")["BucketName"], pseudo, {"Stage": stage}))


@pytest.fixture(scope="module")
def resources() -> dict[str, dict[str, Any]]:
    return translated_template()["Resources"]


# ------------------------------------------------------------------------------ a new account


def test_no_function_reserves_concurrency(resources: dict[str, Any]) -> None:
    # A new account's concurrency quota can be as low as 10, and Lambda keeps 10 unreserved: any reservation
    # can make the create fail and the stack roll back.
    functions = _of_type(resources, "AWS::Lambda::Function")
    assert functions

    reserving = [lid for lid, f in functions.items() if "ReservedConcurrentExecutions" in f["Properties"]]

    assert reserving == []


def test_ingest_is_capped_by_its_event_source_mapping(resources: dict[str, Any]) -> None:
    (mapping,) = [
        r["Properties"]
        for r in _of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if r["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
    ]

    assert 2 <= mapping["ScalingConfig"]["MaximumConcurrency"] <= 50


def test_retained_resources_are_deleted_when_the_first_create_fails(resources: dict[str, Any]) -> None:
    kept = {lid: r for lid, r in resources.items() if r.get("DeletionPolicy", "Delete") != "Delete"}

    assert {
        "MediaBucket",
        "UsersTable",
        "ImagesTable",
        "ClassificationCacheTable",
        "StatsTable",
        "JobsTable",
    } <= set(kept)
    assert {lid: r["DeletionPolicy"] for lid, r in kept.items()} == dict.fromkeys(
        kept, "RetainExceptOnCreate"
    )
    assert {lid: r.get("UpdateReplacePolicy") for lid, r in kept.items()} == dict.fromkeys(kept, "Retain")


def test_bucket_name_is_new_for_every_stack_and_fits_s3s_rules(resources: dict[str, Any]) -> None:
    first = _bucket_name(
        resources, region="us-east-1", stage="dev", uuid="c6a5a720-81f5-11ee-a5a8-0a1b2c3d4e5f"
    )
    again = _bucket_name(
        resources, region="us-east-1", stage="dev", uuid="0d1e2f30-81f6-11ee-b1b1-0a1b2c3d4e5f"
    )
    longest = _bucket_name(
        resources, region=LONGEST_REGION, stage="prod", uuid="ffffffff-ffff-ffff-ffff-ffffffffffff"
    )

    assert first == "photopipe-media-dev-123456789012-us-east-1-c6a5a720"
    assert again != first, "a stack created after a deleted one must not need the retained bucket's name"
    for name in (first, again, longest):
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", name), name


def test_ingest_queue_policy_names_the_bucket_the_template_creates(resources: dict[str, Any]) -> None:
    statement = _props(resources, "IngestQueuePolicy")["PolicyDocument"]["Statement"][0]
    uuid = "c6a5a720-81f5-11ee-a5a8-0a1b2c3d4e5f"
    pseudo = {
        "AWS::StackId": STACK_ID.format(region="eu-west-1", stage="prod", uuid=uuid),
        "AWS::AccountId": "123456789012",
        "AWS::Region": "eu-west-1",
        "AWS::Partition": "aws",
    }

    source_arn = _evaluate(statement["Condition"]["ArnEquals"]["aws:SourceArn"], pseudo, {"Stage": "prod"})

    assert source_arn == "arn:aws:s3:::" + _bucket_name(
        resources, region="eu-west-1", stage="prod", uuid=uuid
    )
    assert "'MediaBucket'" not in str(statement), "a reference to the bucket would be a dependency cycle"


@pytest.mark.parametrize("name", ["photopipe-media-dev-123456789012-us-east-1-c6a5a720"])
def test_the_evaluator_reads_the_names_it_is_given(name: str) -> None:
    template_value = {
        "Fn::Sub": [
            "photopipe-media-${Stage}-${AWS::AccountId}-${AWS::Region}-${Id}",
            {
                "Id": {
                    "Fn::Select": [
                        0,
                        {
                            "Fn::Split": [
                                "-",
                                {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]},
                            ]
                        },
                    ]
                }
            },
        ]
    }
    pseudo = {
        "AWS::StackId": STACK_ID.format(
            region="us-east-1", stage="dev", uuid="c6a5a720-0000-0000-0000-000000000000"
        ),
        "AWS::AccountId": "123456789012",
        "AWS::Region": "us-east-1",
    }

    assert _evaluate(template_value, pseudo, {"Stage": "dev"}) == name


# ------------------------------------------------------------------------------ work fits its time


def _event_source(resources: dict[str, Any], queue_id: str) -> dict[str, Any]:
    (mapping,) = [
        r["Properties"]
        for r in _of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if r["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    ]
    return mapping


COLD_START_MARGIN_S = 20  # imports, settings, the first secret read


def test_a_classify_batch_fits_the_function_timeout(resources: dict[str, Any]) -> None:
    function = _props(resources, "ClassifyFunction")
    budget = float(function["Environment"]["Variables"]["CLASSIFY_RECORD_BUDGET_SECONDS"])
    batch = _event_source(resources, "ClassifyQueue")["BatchSize"]

    # the worst batch: every record uses its whole budget (the use case stops it there)
    assert batch * budget + COLD_START_MARGIN_S <= function["Timeout"]
    # and a record's budget holds a retried model call: two full calls, the backoff, the write margin
    defaults = inspect.signature(VisionClassifier.__init__).parameters
    call, backoff = defaults["max_call_timeout"].default, defaults["base_delay"].default
    assert (
        budget >= classify_usecase._SAFETY_MARGIN_S + 2 * call + backoff + defaults["safety_margin"].default
    )
    assert budget == classify_usecase.RECORD_BUDGET_S, "the code's default and the template agree"


@pytest.mark.parametrize(
    ("function_id", "queue_id"),
    [
        ("IngestFunction", "IngestQueue"),
        ("ClassifyFunction", "ClassifyQueue"),
        ("ExportsFunction", "ExportsQueue"),
    ],
)
def test_queue_visibility_is_at_least_six_function_timeouts(
    resources: dict[str, Any], function_id: str, queue_id: str
) -> None:
    # AWS's advice for SQS event sources: a message in flight while retries and batching windows run out
    # must not come back while the function may still be holding it.
    timeout = _props(resources, function_id)["Timeout"]

    assert _props(resources, queue_id)["VisibilityTimeout"] >= 6 * timeout


# ------------------------------------------------------------------------------ nothing stays stuck

DEAD_LETTER_QUEUES = {
    "Ingest": "INGEST_DEAD_LETTER_QUEUE_ARN",
    "Classify": "CLASSIFY_DEAD_LETTER_QUEUE_ARN",
    "GpuJobs": "GPU_JOBS_DEAD_LETTER_QUEUE_ARN",
    "Exports": "EXPORTS_DEAD_LETTER_QUEUE_ARN",
}


@pytest.fixture(scope="module")
def mappings() -> dict[str, Any]:
    return dict(translated_template()["Mappings"])


def _count(mappings: dict[str, Any], value: Any) -> int:
    _, top, second = value["Fn::FindInMap"]
    return int(mappings["Limits"][top][second])


@pytest.mark.parametrize("prefix", sorted(DEAD_LETTER_QUEUES))
def test_the_recorder_gets_three_deliveries_whatever_the_count_a_dlq_message_arrives_with(
    resources: dict[str, Any], mappings: dict[str, Any], prefix: str
) -> None:
    # SQS (and moto) keep a message's receive count when it moves to the DLQ: were the DLQ's own count not
    # above the source's, the first receive there would move the message on before it was recorded.
    source = _count(mappings, _props(resources, f"{prefix}Queue")["RedrivePolicy"]["maxReceiveCount"])
    dlq = _count(mappings, _props(resources, f"{prefix}DeadLetterQueue")["RedrivePolicy"]["maxReceiveCount"])

    assert dlq - source == 3


@pytest.mark.parametrize("prefix", sorted(DEAD_LETTER_QUEUES))
def test_every_dlq_is_recorded_then_kept_for_a_redrive(resources: dict[str, Any], prefix: str) -> None:
    dlq, kept = f"{prefix}DeadLetterQueue", f"{prefix}RedriveQueue"
    mapping = _event_source(resources, dlq)
    function = _props(resources, "DeadLetterFunction")
    queue = _props(resources, dlq)

    assert mapping["FunctionName"] == {"Ref": "DeadLetterFunction"}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert function["Environment"]["Variables"][DEAD_LETTER_QUEUES[prefix]] == {"Fn::GetAtt": [dlq, "Arn"]}
    # the function reports every message back; the DLQ's own redrive then moves it to the redrive queue
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [kept, "Arn"]}
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]
    # a message keeps its first enqueue time wherever it moves: the redrive queue must keep it as long
    assert _props(resources, kept)["MessageRetentionPeriod"] >= queue["MessageRetentionPeriod"]
    assert _props(resources, kept)["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert "RedrivePolicy" not in _props(resources, kept), "the resting place: nothing moves messages on"


def test_an_alarm_watches_every_redrive_queue(resources: dict[str, Any]) -> None:
    alarm = _props(resources, "RedriveQueuesAlarm")
    watched = {
        m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for m in alarm["Metrics"]
        if "MetricStat" in m
    }

    assert watched == {f"{prefix}RedriveQueue" for prefix in DEAD_LETTER_QUEUES}
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
