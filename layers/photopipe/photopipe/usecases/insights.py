"""Read side of classification: the cache pre-check a client calls before uploading, and the statistics
(computed from the daily counters by key; nothing is scanned)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from photopipe.adapters.classification_cache import ClassificationCache
from photopipe.adapters.stats import StatsRepository
from photopipe.models import CATEGORY_LABELS, CachedResult, Category, ClassificationSource
from photopipe.usecases.classify import near_duplicate

_COUNTERS = (
    "requests",
    "exact_hits",
    "near_hits",
    "misses",
    "failures",
    "skipped",
    "llm_calls",
    "input_tokens",
    "output_tokens",
    "distinct_users",
)


@dataclass(frozen=True)
class CacheCheck:
    hit: bool
    source: ClassificationSource | None = None
    distance: int | None = None
    result: CachedResult | None = None


def last_days(days: int, *, now: datetime | None = None) -> list[str]:
    """The last `days` UTC dates, oldest first, ending today."""
    end = (now or datetime.now(UTC)).date()
    return [(end - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]


def summarize(counters: dict[str, int], currency: str) -> dict[str, Any]:
    """One period's figures from raw counters (money is stored in millionths)."""
    figures: dict[str, Any] = {name: int(counters.get(name, 0)) for name in _COUNTERS}
    hits = figures["exact_hits"] + figures["near_hits"]
    answered = hits + figures["misses"]
    figures["cache_hits"] = hits
    figures["hit_rate"] = round(hits / answered, 4) if answered else 0.0
    figures["estimated_cost"] = round(counters.get("cost_micro", 0) / 1_000_000, 6)
    figures["cost_saved"] = round(counters.get("saved_micro", 0) / 1_000_000, 6)
    figures["currency"] = currency
    return figures


@dataclass(frozen=True)
class Insights:
    cache: ClassificationCache
    stats: StatsRepository
    max_distance: int
    currency: str

    def check_cache(self, sha256: str, phash: str | None) -> CacheCheck:
        exact = self.cache.get_exact(sha256)
        if exact is not None:
            return CacheCheck(hit=True, source=ClassificationSource.EXACT_CACHE, result=exact)
        if phash:
            near = near_duplicate(self.cache, phash, self.max_distance)
            if near is not None:
                return CacheCheck(
                    hit=True, source=ClassificationSource.NEAR_DUPLICATE, distance=near[1], result=near[0]
                )
        return CacheCheck(hit=False)

    def today(self) -> dict[str, Any]:
        day = last_days(1)[0]
        return {"day": day, **summarize(self.stats.days([day])[day], self.currency)}

    def cache_efficiency(self, days: int) -> dict[str, Any]:
        per_day = self.stats.days(last_days(days))
        totals: dict[str, int] = {}
        for counters in per_day.values():
            for name, value in counters.items():
                totals[name] = totals.get(name, 0) + value
        # A user seen on two days is two distinct users in the per-day figures; the period total sums them.
        return {
            "days": [{"day": day, **summarize(c, self.currency)} for day, c in per_day.items()],
            "totals": summarize(totals, self.currency),
        }

    def categories(self, days: int) -> dict[str, Any]:
        per_day = self.stats.days(last_days(days))
        counts = {c: sum(d.get(f"cat_{c.value}", 0) for d in per_day.values()) for c in Category}
        total = sum(counts.values())
        return {
            "days": days,
            "total": total,
            "categories": [
                {
                    "category": c.value,
                    "label_zh": CATEGORY_LABELS[c][0],
                    "label_en": CATEGORY_LABELS[c][1],
                    "count": n,
                    "share": round(n / total, 4) if total else 0.0,
                }
                for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].value))
            ],
        }
