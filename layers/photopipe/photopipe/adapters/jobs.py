"""Jobs table: enhancement jobs keyed by job_id, listed per owner (`by-owner`) and per batch (`by-batch`).

Every change is a conditional write: a state move names the states it may leave, and a running job's
updates also name the worker holding it, so a worker that lost its job (cancelled, or taken over after its
lease ran out) can never overwrite what came after. A failed condition returns None, not an exception."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import BotoCoreError, ClientError

from photopipe.adapters.aws import error_code, translate
from photopipe.adapters.dynamo import conditional_update, plain, table, to_item, transition
from photopipe.models import Job, JobState, utcnow_iso

OWNER_INDEX = "by-owner"
BATCH_INDEX = "by-batch"


def _job(item: dict[str, Any]) -> Job:
    return Job.model_validate(plain(item))


class JobsRepository:
    def __init__(self, table_name: str, resource: Any | None = None) -> None:
        self._table = table(table_name, resource)

    # ------------------------------------------------------------------ create / read / delete
    def create(self, job: Job) -> None:
        try:
            self._table.put_item(Item=to_item(job.item()), ConditionExpression="attribute_not_exists(job_id)")
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "creating the job record") from e

    def get(self, job_id: str) -> Job | None:
        try:
            resp = self._table.get_item(Key={"job_id": job_id}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "reading the job record") from e
        item = resp.get("Item")
        return _job(item) if item else None

    def delete(self, job_id: str, *, from_states: Iterable[JobState]) -> bool:
        """Delete a job only while it is in one of `from_states` (a finished one, from the API)."""
        states = [s.value for s in from_states]
        try:
            self._table.delete_item(
                Key={"job_id": job_id},
                ConditionExpression="#state IN (" + ", ".join(f":s{i}" for i in range(len(states))) + ")",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={f":s{i}": s for i, s in enumerate(states)},
            )
        except ClientError as e:
            if error_code(e) == "ConditionalCheckFailedException":
                return False
            raise translate(e, "deleting the job record") from e
        except BotoCoreError as e:
            raise translate(e, "deleting the job record") from e
        return True

    def states(self, job_ids: Iterable[str]) -> dict[str, JobState]:
        """The state of each job that exists (batched reads, strongly consistent)."""
        wanted = list(dict.fromkeys(job_ids))
        found: dict[str, JobState] = {}
        client = self._table.meta.client
        for start in range(0, len(wanted), 100):
            keys = [{"job_id": j} for j in wanted[start : start + 100]]
            request: dict[str, Any] = {
                self._table.name: {
                    "Keys": keys,
                    "ConsistentRead": True,
                    "ProjectionExpression": "job_id, #state",
                    "ExpressionAttributeNames": {"#state": "state"},
                }
            }
            while request:
                try:
                    resp = client.batch_get_item(RequestItems=request)
                except (ClientError, BotoCoreError) as e:
                    raise translate(e, "reading the jobs") from e
                for item in resp.get("Responses", {}).get(self._table.name, []):
                    found[str(item["job_id"])] = JobState(item["state"])
                request = resp.get("UnprocessedKeys") or {}
        return found

    def list_by_batch(self, batch_id: str) -> list[Job]:
        return self._query(BATCH_INDEX, Key("batch_id").eq(batch_id), "listing the batch's jobs")

    def list_by_owner(self, user_id: str, *, limit: int = 100) -> list[Job]:
        return self._query(
            OWNER_INDEX, Key("user_id").eq(user_id), "listing jobs", limit=limit, newest_first=True
        )

    def _query(
        self, index: str, condition: Any, what: str, *, limit: int | None = None, newest_first: bool = False
    ) -> list[Job]:
        jobs: list[Job] = []
        kwargs: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ScanIndexForward": not newest_first,
        }
        while True:
            try:
                resp = self._table.query(**kwargs)
            except (ClientError, BotoCoreError) as e:
                raise translate(e, what) from e
            jobs.extend(_job(i) for i in resp.get("Items", []))
            last = resp.get("LastEvaluatedKey")
            if not last or (limit is not None and len(jobs) >= limit):
                return jobs[:limit] if limit is not None else jobs
            kwargs["ExclusiveStartKey"] = last

    # ------------------------------------------------------------------ transitions
    def update(
        self,
        job_id: str,
        *,
        from_states: Iterable[JobState],
        to_state: JobState | None = None,
        set_fields: dict[str, Any] | None = None,
        remove_fields: Iterable[str] = (),
        held_by: str | None = None,
        owner: str | None = None,
        add_attempt: bool = False,
    ) -> Job | None:
        """Conditionally update a job; returns the new record, or None when the condition did not hold.

        `from_states`: the states it may be in. `held_by`: it must be held by this worker. `owner`: it must
        belong to this user."""
        fields: dict[str, Any] = {**(set_fields or {}), "updated_at": utcnow_iso()}
        if to_state is not None:
            fields["state"] = to_state.value
        t = transition(
            "job_id",
            from_states=[s.value for s in from_states],
            set_fields=fields,
            remove_fields=remove_fields,
        )
        if add_attempt:
            t.names["#attempts"] = "attempts"
            t.values.update({":one": 1, ":zero": 0})
            t.set_clauses.append("#attempts = if_not_exists(#attempts, :zero) + :one")
        if held_by is not None:
            t.names["#worker"] = "worker_id"
            t.values[":worker"] = held_by
            t.condition += " AND #worker = :worker"
        if owner is not None:
            t.names["#owner"] = "user_id"
            t.values[":owner"] = owner
            t.condition += " AND #owner = :owner"
        return self._update(job_id, t.update, t.condition, t.names, t.values)

    def claim(self, job_id: str, *, worker_id: str, lease_until: float, now: float) -> Job | None:
        """queued → running for this worker; or take over a running job whose lease ran out (its worker
        died) or that this worker already holds (a redelivery to the same worker)."""
        fields: dict[str, Any] = {
            "state": JobState.RUNNING.value,
            "worker_id": worker_id,
            "lease_expires_at": lease_until,
            "updated_at": utcnow_iso(),
        }
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        values: dict[str, Any] = {f":v{i}": to_item(v) for i, v in enumerate(fields.values())}
        names.update({"#state": "state", "#attempts": "attempts", "#lease": "lease_expires_at"})
        names["#worker"] = "worker_id"
        values.update(
            {
                ":queued": JobState.QUEUED.value,
                ":running": JobState.RUNNING.value,
                ":now": to_item(now),
                ":me": worker_id,
                ":one": 1,
                ":zero": 0,
            }
        )
        update = (
            "SET "
            + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
            + ", #attempts = if_not_exists(#attempts, :zero) + :one REMOVE #error"
        )
        names["#error"] = "error"
        condition = (
            "attribute_exists(job_id) AND (#state = :queued OR (#state = :running AND "
            "(attribute_not_exists(#lease) OR #lease <= :now OR #worker = :me)))"
        )
        return self._update(job_id, update, condition, names, values)

    def _update(
        self, job_id: str, update: str, condition: str, names: dict[str, str], values: dict[str, Any]
    ) -> Job | None:
        item = conditional_update(
            self._table,
            {"job_id": job_id},
            update=update,
            condition=condition,
            names=names,
            values=values,
            what="updating the job record",
        )
        return _job(item) if item else None
