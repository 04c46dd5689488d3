"""The GPU worker stack (infra/gpu-worker/stack.yaml): it lints, its task role grants what the worker calls,
it tells the API a fleet is deployed, and its scaling is the policy `infra/gpu-worker/scaling.py` describes -
the numbers and expressions are read from the stack, the behaviour is simulated minute by minute."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from cfnlint.api import lint
from cfnlint.config import ManualArgs

from tests.conftest import ROOT
from tests.unit.test_template import _as_list, _CfnLoader, _render
from tests.unit.test_template_deploy import _evaluate

STACK = ROOT / "infra" / "gpu-worker" / "stack.yaml"


def _load_scaling() -> ModuleType:
    name = "photopipe_gpu_scaling"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "infra" / "gpu-worker" / "scaling.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


scaling = _load_scaling()
POLICY = scaling.ScalingPolicy()


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return dict(yaml.load(STACK.read_text(), Loader=_CfnLoader))  # noqa: S506 - a SafeLoader subclass


def _props(stack: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return dict(stack["Resources"][logical_id]["Properties"])


def _default(stack: dict[str, Any], parameter: str) -> int:
    return int(stack["Parameters"][parameter]["Default"])


def _expression(alarm: dict[str, Any], metric_id: str, stack: dict[str, Any]) -> str:
    (metric,) = [m for m in alarm["Metrics"] if m["Id"] == metric_id]
    text, variables = metric["Expression"]["Fn::Sub"]
    assert variables == {"Threshold": {"Ref": "JobsPerWorker"}}
    return str(text.replace("${Threshold}", str(_default(stack, "JobsPerWorker"))))


# ------------------------------------------------------------------------------ lint


def test_cfn_lint_finds_nothing(tmp_path: Path) -> None:
    matches = lint(STACK.read_text(), config=ManualArgs(regions=["us-east-1"]))

    assert [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches] == []


def test_make_test_lints_the_stack() -> None:
    makefile = (ROOT / "Makefile").read_text()
    target = makefile[makefile.index("\ntemplate-lint:") :].split("\n\n", 1)[0]

    assert "cfn-lint infra/gpu-worker/stack.yaml" in target
    assert "template-lint" in makefile[makefile.index("\ntest:") :].split("\n", 2)[1]


# ------------------------------------------------------------------------------ scaling: the stack's numbers


def test_the_stack_scales_with_the_policys_numbers(stack: dict[str, Any]) -> None:
    assert _default(stack, "JobsPerWorker") == POLICY.jobs_per_worker
    assert _default(stack, "MaxWorkers") == POLICY.max_workers
    assert _default(stack, "InstanceStartSeconds") == POLICY.instance_start_s
    assert _default(stack, "ScaleOutCooldownSeconds") == POLICY.scale_out_cooldown_s
    assert _default(stack, "IdleMinutesBeforeScaleIn") == POLICY.idle_minutes
    assert POLICY.scale_out_cooldown_s > POLICY.instance_start_s, (
        "a starting worker is never answered with another"
    )

    out = _props(stack, "ScaleOutPolicy")["StepScalingPolicyConfiguration"]
    assert out["AdjustmentType"] == "ChangeInCapacity"
    assert out["Cooldown"] == {"Ref": "ScaleOutCooldownSeconds"}
    # steps relative to the threshold: +1 up to 4x it, +2 beyond
    assert out["StepAdjustments"] == [
        {
            "MetricIntervalLowerBound": 0,
            "MetricIntervalUpperBound": 3 * POLICY.jobs_per_worker,
            "ScalingAdjustment": 1,
        },
        {"MetricIntervalLowerBound": 3 * POLICY.jobs_per_worker, "ScalingAdjustment": 2},
    ]
    alarm = _props(stack, "BacklogPerWorkerAlarm")
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (
        {"Ref": "JobsPerWorker"},
        "GreaterThanThreshold",
    )
    assert alarm["AlarmActions"] == [{"Ref": "ScaleOutPolicy"}]
    assert alarm["EvaluationPeriods"] == 1

    scale_in = _props(stack, "ScaleInPolicy")["StepScalingPolicyConfiguration"]
    assert scale_in["Cooldown"] == POLICY.scale_in_cooldown_s
    assert scale_in["StepAdjustments"] == [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": -1}]
    spare = _props(stack, "SpareWorkerAlarm")
    assert spare["EvaluationPeriods"] == spare["DatapointsToAlarm"] == POLICY.scale_in_minutes
    assert spare["AlarmActions"] == [{"Ref": "ScaleInPolicy"}]

    idle = _props(stack, "QueueIdleAlarm")
    assert idle["EvaluationPeriods"] == idle["DatapointsToAlarm"] == {"Ref": "IdleMinutesBeforeScaleIn"}
    assert idle["TreatMissingData"] == "breaching"
    zero = _props(stack, "ScaleToZeroPolicy")["StepScalingPolicyConfiguration"]
    assert (zero["AdjustmentType"], zero["StepAdjustments"][0]["ScalingAdjustment"]) == ("ExactCapacity", 0)

    target = _props(stack, "ScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, {"Ref": "MaxWorkers"})
    provider = _props(stack, "CapacityProvider")["AutoScalingGroupProvider"]["ManagedScaling"]
    assert provider["InstanceWarmupPeriod"] == {"Ref": "InstanceStartSeconds"}


def _metric_math(expression: str, values: dict[str, float]) -> float:
    """The subset of CloudWatch metric math the alarms use (FILL, IF, AND, comparisons, arithmetic)."""
    import ast

    tree = ast.parse(
        expression.replace(" AND ", " and ").replace("IF(", "_if(").replace("FILL(", "_fill("), mode="eval"
    )

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.BinOp):
            left, right = ev(node.left), ev(node.right)
            ops = {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}
            return ops[type(node.op)] if type(node.op) in ops else left / right
        if isinstance(node, ast.Compare):
            (op,), (right,) = node.ops, node.comparators
            a, b = ev(node.left), ev(right)
            return {ast.Eq: a == b, ast.Gt: a > b, ast.Lt: a < b}[type(op)]
        if isinstance(node, ast.BoolOp):
            return all(ev(v) for v in node.values)
        if isinstance(node, ast.Call):
            name = node.func.id  # type: ignore[attr-defined]
            if name == "_fill":
                return ev(node.args[0])
            condition, yes, no = node.args
            return ev(yes) if ev(condition) else ev(no)
        raise AssertionError(f"not used by the alarms: {ast.dump(node)}")

    return float(ev(tree))


MINUTES = [
    scaling.Minute(backlog=b, running=r, desired=d)
    for b in (0, 1, 5, 299, 300, 301, 1200, 1201, 5000)
    for r in (0, 1, 2, 4)
    for d in (0, 1, 2, 4)
]


@pytest.mark.parametrize("minute", MINUTES, ids=str)
def test_the_alarms_compute_what_the_policy_says(stack: dict[str, Any], minute: Any) -> None:
    values = {"waiting": minute.backlog, "inflight": 0, "running": minute.running, "desired": minute.desired}
    values["backlog"] = values["waiting"] + values["inflight"]
    per_worker = _metric_math(_expression(_props(stack, "BacklogPerWorkerAlarm"), "perworker", stack), values)
    spare = _metric_math(_expression(_props(stack, "SpareWorkerAlarm"), "spare", stack), values)

    assert per_worker == pytest.approx(POLICY.per_worker(minute))
    step = (
        0 if per_worker <= POLICY.jobs_per_worker else (1 if per_worker - POLICY.jobs_per_worker < 900 else 2)
    )
    assert step == POLICY.out_step(minute)
    assert (spare > 0) == POLICY.wants_fewer(minute)


# ------------------------------------------------------------------------------ scaling: behaviour


def _simulate(arrivals: list[int], jobs_per_minute: int = 60) -> list[Any]:
    return list(scaling.Simulation(POLICY, jobs_per_minute=jobs_per_minute).run(arrivals))


def test_one_job_starts_one_worker_from_zero_and_never_a_second() -> None:
    history = _simulate([1] + [0] * 60)

    desired = [m.desired for m in history]
    assert desired[1] == 1, "the first minute's backlog starts a worker"
    assert max(desired) == 1
    assert desired[-1] == 0, "back to zero once idle"


def test_a_big_backlog_ramps_up_one_cooldown_at_a_time_to_the_maximum_then_back_to_zero() -> None:
    history = _simulate([6000] + [0] * 240, jobs_per_minute=30)

    desired = [m.desired for m in history]
    assert max(desired) == POLICY.max_workers
    rises = [t for t in range(1, len(desired)) if desired[t] > desired[t - 1]]
    # after the start from zero, never two scale-outs within a cooldown
    cooldown_minutes = POLICY.scale_out_cooldown_s // 60
    assert len(rises) >= 2
    assert all(b - a >= cooldown_minutes for a, b in itertools.pairwise(rises)), rises
    assert desired[-1] == 0
    assert history[-1].backlog == 0


def test_a_trickle_one_worker_keeps_up_with_runs_on_one_worker() -> None:
    history = _simulate([20] * 120)

    assert {m.desired for m in history[1:]} == {1}


def test_spare_workers_go_one_at_a_time_when_the_backlog_falls() -> None:
    # a burst that needs the whole fleet, then a steady trickle one worker handles
    history = _simulate([6000] + [5] * 300, jobs_per_minute=30)

    desired = [m.desired for m in history]
    peak = desired.index(POLICY.max_workers)
    after = desired[peak:]
    assert after[-1] == 1
    assert all(a - b in (0, 1) for a, b in itertools.pairwise(after)), "one at a time"


def test_the_policy_refuses_a_cooldown_shorter_than_an_instance_start() -> None:
    with pytest.raises(ValueError, match="longer than an instance's start"):
        scaling.ScalingPolicy(instance_start_s=600, scale_out_cooldown_s=300)


# ------------------------------------------------------------------------------ the task role

# The grants for one deployment's parameters, evaluated: every worker call and nothing else.
PARAMETERS = {
    "GpuJobsQueueName": "photopipe-dev-GpuJobsQueue-AbC",
    "JobsTableName": "photopipe-dev-JobsTable-1",
    "WorkersTableName": "photopipe-dev-WorkersTable-2",
    "CreditsTableName": "photopipe-dev-CreditsTable-3",
    "MediaBucketName": "photopipe-media-dev-123456789012-us-east-1-c6a5a720",
    "ModelS3Uri": "s3://photopipe-models-dev/gfpgan-v1.4/",
}
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}
QUEUE = "arn:aws:sqs:us-east-1:123456789012:photopipe-dev-GpuJobsQueue-AbC"
JOBS = "arn:aws:dynamodb:us-east-1:123456789012:table/photopipe-dev-JobsTable-1"
WORKERS = "arn:aws:dynamodb:us-east-1:123456789012:table/photopipe-dev-WorkersTable-2"
CREDITS = "arn:aws:dynamodb:us-east-1:123456789012:table/photopipe-dev-CreditsTable-3"
MEDIA = "arn:aws:s3:::photopipe-media-dev-123456789012-us-east-1-c6a5a720"
EXPECTED_TASK_GRANTS = {
    ("sqs:ReceiveMessage", QUEUE),
    ("sqs:DeleteMessage", QUEUE),
    ("sqs:ChangeMessageVisibility", QUEUE),
    ("dynamodb:GetItem", JOBS),
    ("dynamodb:UpdateItem", JOBS),
    # register, heartbeat, unregister: no Scan, the worker never lists the fleet
    ("dynamodb:PutItem", WORKERS),
    ("dynamodb:UpdateItem", WORKERS),
    ("dynamodb:DeleteItem", WORKERS),
    # a job that fails for good is refunded: one conditional transaction on the ledger and the balance
    ("dynamodb:GetItem", CREDITS),
    ("dynamodb:PutItem", CREDITS),
    ("dynamodb:UpdateItem", CREDITS),
    ("dynamodb:ConditionCheckItem", CREDITS),
    ("s3:GetObject", f"{MEDIA}/originals/*"),
    ("s3:PutObject", f"{MEDIA}/enhanced/*"),
    ("s3:DeleteObject", f"{MEDIA}/enhanced/*"),
    ("s3:ListBucket", MEDIA),
    ("s3:GetObject", "arn:aws:s3:::photopipe-models-dev/gfpgan-v1.4/*"),
    ("s3:ListBucket", "arn:aws:s3:::photopipe-models-dev"),
}


def test_the_task_role_grants_what_the_worker_calls(stack: dict[str, Any]) -> None:
    (policy,) = _props(stack, "TaskRole")["Policies"]
    statements = policy["PolicyDocument"]["Statement"]

    granted = {
        (action, _evaluate(resource, PSEUDO, PARAMETERS))
        for st in statements
        for action in _as_list(st["Action"])
        for resource in _as_list(st["Resource"])
    }

    assert all(st["Effect"] == "Allow" for st in statements)
    assert granted == EXPECTED_TASK_GRANTS
    (media_list,) = [s for s in statements if s["Sid"] == "ListWhatItReads"]
    # prefix-scoped: what it reads (so a deleted original is not found, not forbidden) and what it writes
    assert media_list["Condition"] == {"StringLike": {"s3:prefix": ["originals/*", "enhanced/*"]}}


# ------------------------------------------------------------------------------ telling the API


def test_the_stack_writes_the_parameter_the_api_reads(stack: dict[str, Any]) -> None:
    from tests.unit.template_support import translated_template

    parameter = _props(stack, "FleetParameter")
    api_env = translated_template()["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]

    # both name it after the gpu-jobs queue: the API's own, the stack's parameter (the SAM stack's output)
    assert _render(parameter["Name"]) == "/photopipe/gpu-fleet/${GpuJobsQueueName}"
    assert _render(api_env["GPU_FLEET_PARAMETER"]) == "/photopipe/gpu-fleet/${GpuJobsQueue.QueueName}"
    assert (
        stack["Parameters"]["GpuJobsQueueName"]["Description"] == "The SAM stack's GpuJobsQueueName output."
    )
    assert '"scales_from_zero": true' in parameter["Value"]["Fn::Sub"]


def test_the_stack_lists_the_vpc_endpoints_a_subnet_without_nat_needs(stack: dict[str, Any]) -> None:
    text = stack["Description"] + stack["Parameters"]["SubnetIds"]["Description"]

    for endpoint in (
        "ecs,",
        "ecs-agent",
        "ecs-telemetry",
        "ecr.api",
        "ecr.dkr",
        "s3",
        "dynamodb",
        "sqs",
        "logs",
    ):
        assert endpoint in text, endpoint
