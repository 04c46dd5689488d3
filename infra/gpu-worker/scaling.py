"""How the GPU fleet scales, as logic: what `stack.yaml`'s alarms and step policies do each minute, written as
one pure function so that it can be read, simulated and tested (tests/unit/test_gpu_scaling.py checks the
stack's numbers and expressions against it).

Every minute CloudWatch sees, on the gpu-jobs queue and the ECS service:

    backlog  = jobs waiting + jobs in flight   (ApproximateNumberOfMessagesVisible + ...NotVisible)
    running  = worker tasks running            (Container Insights RunningTaskCount)
    desired  = the service's desired count     (Container Insights DesiredTaskCount)

and the service's desired count moves by these rules, first match wins:

1. **To zero when idle**: no backlog for `idle_minutes` minutes in a row -> 0 (nothing runs, nothing is paid).
2. **Out, from zero included**: the backlog per running worker is above `jobs_per_worker` -> +1 (+2 from four
   times that), at most `max_workers`, and at most once per `scale_out_cooldown_s`. With no worker, any
   backlog counts as above the threshold (one job starts one worker). The cooldown is longer than an
   instance's start (boot, ECS agent, image pull, model fetch and warm-up: `instance_start_s`), so a worker
   that is still starting is never answered with another: one job never starts two.
3. **In, one at a time**: more than one worker, and the backlog would stay under half the threshold with one
   worker fewer, for `scale_in_minutes` minutes -> -1, at most once per `scale_in_cooldown_s`. The stopped
   worker gets SIGTERM and finishes the faces it holds first.

`jobs_per_worker` is the backlog one worker clears in about the time a new one takes to start: below it, a
new worker would arrive after the work is done."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Minute:
    """One minute of the metrics the alarms read."""

    backlog: int
    running: int
    desired: int


@dataclass(frozen=True)
class ScalingPolicy:
    jobs_per_worker: int = 300
    max_workers: int = 4
    instance_start_s: int = 600
    scale_out_cooldown_s: int = 900
    scale_in_minutes: int = 10
    scale_in_cooldown_s: int = 600
    idle_minutes: int = 15

    def __post_init__(self) -> None:
        if self.scale_out_cooldown_s <= self.instance_start_s:
            raise ValueError("the scale-out cooldown must be longer than an instance's start")
        if self.jobs_per_worker < 1 or self.max_workers < 1:
            raise ValueError("jobs_per_worker and max_workers must be at least 1")

    # ------------------------------------------------------------------ what each alarm computes
    def per_worker(self, m: Minute) -> float:
        """The scale-out alarm's metric: backlog per running worker; with none desired, any backlog counts
        as over the threshold (at least threshold + 1)."""
        if m.desired == 0 and m.backlog > 0:
            return float(max(m.backlog, self.jobs_per_worker + 1))
        return m.backlog / max(m.running, 1)

    def out_step(self, m: Minute) -> int:
        """The scale-out policy's step for this minute (0: the alarm is not breached)."""
        value = self.per_worker(m)
        if value <= self.jobs_per_worker:
            return 0
        return 1 if value < 4 * self.jobs_per_worker else 2

    def wants_fewer(self, m: Minute) -> bool:
        """The scale-in alarm's condition for this minute."""
        return m.running > 1 and m.backlog < (m.running - 1) * self.jobs_per_worker / 2

    # ------------------------------------------------------------------ the decision
    def decide(
        self, minutes: Sequence[Minute], *, since_scale_out_s: float | None, since_scale_in_s: float | None
    ) -> int:
        """The desired count after the last of `minutes` (oldest first). `since_*`: seconds since the last
        scale-out / scale-in activity (None: never)."""
        now = minutes[-1]
        idle = minutes[-self.idle_minutes :]
        if len(idle) == self.idle_minutes and all(m.backlog == 0 for m in idle):
            return 0
        step = self.out_step(now)
        if step and (since_scale_out_s is None or since_scale_out_s >= self.scale_out_cooldown_s):
            return min(self.max_workers, now.desired + step)
        recent = minutes[-self.scale_in_minutes :]
        cooled = since_scale_in_s is None or since_scale_in_s >= self.scale_in_cooldown_s
        if len(recent) == self.scale_in_minutes and all(self.wants_fewer(m) for m in recent) and cooled:
            return max(1, now.desired - 1)
        return now.desired


@dataclass
class Simulation:
    """A fleet under the policy, minute by minute: a desired worker runs `instance_start_s` after it was
    asked for and clears `jobs_per_minute` jobs a minute."""

    policy: ScalingPolicy
    jobs_per_minute: int
    backlog: int = 0
    desired: int = 0
    history: list[Minute] | None = None
    _starting: list[int] | None = None  # minute at which each desired worker will be running
    _last_out: int | None = None
    _last_in: int | None = None

    def run(self, arrivals: Sequence[int]) -> list[Minute]:
        """`arrivals[t]`: jobs queued in minute t. Returns what CloudWatch saw each minute."""
        start_minutes = -(-self.policy.instance_start_s // 60)
        self.history, self._starting = [], []
        for t, new in enumerate(arrivals):
            # The alarms read each minute's maximum: the backlog with this minute's arrivals, before the
            # running workers have cleared what they clear in it.
            self.backlog += new
            running = sum(1 for s in self._starting if s <= t)
            self.history.append(Minute(backlog=self.backlog, running=running, desired=self.desired))
            self.backlog = max(0, self.backlog - running * self.jobs_per_minute)
            desired = self.policy.decide(
                self.history,
                since_scale_out_s=None if self._last_out is None else (t - self._last_out) * 60,
                since_scale_in_s=None if self._last_in is None else (t - self._last_in) * 60,
            )
            if desired > self.desired:
                self._starting += [t + start_minutes] * (desired - self.desired)
                self._last_out = t
            elif desired < self.desired:
                self._starting = sorted(self._starting)[:desired]
                self._last_in = t
            self.desired = desired
        return self.history
