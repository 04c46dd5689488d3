"""`photopipe stats`: what the classification cache saved, today and over the last days."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from photopipe_cli.options import ApiOption, JsonOption


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)


def stats(
    days: Annotated[
        int, typer.Option(min=1, max=90, help="How many days the cache and category figures cover.")
    ] = 7,
    api: ApiOption = None,
    json_: JsonOption = False,
) -> None:
    """Show classification and cache figures.

    Today's classification figures, what the cache saved per day, and the photos per category."""
    from photopipe_cli.context import Ctx

    ctx = Ctx(api=api, json_mode=json_)
    client = ctx.client()
    today = client.get("/stats/today")
    cache = client.get("/stats/cache", params={"days": days})
    categories = client.get("/stats/categories", params={"days": days})
    if json_:
        ctx.ui.emit({"today": today, "cache": cache, "categories": categories})
        return
    _render(ctx.ui, today, cache, categories, days)


def _render(
    ui: Any, today: dict[str, Any], cache: dict[str, Any], categories: dict[str, Any], days: int
) -> None:
    from rich.table import Table

    from photopipe_cli.ui import plain

    t = Table(
        title=f"Today ({today.get('day')})", show_header=False, box=None, pad_edge=False, title_justify="left"
    )
    t.add_column(style="bold")
    t.add_column(justify="right")
    currency = today.get("currency", "")
    for label, key in (
        ("requests", "requests"),
        ("exact-cache hits", "exact_hits"),
        ("near-duplicate hits", "near_hits"),
        ("misses", "misses"),
        ("failures", "failures"),
        ("model calls", "llm_calls"),
        ("users", "distinct_users"),
    ):
        t.add_row(label, plain(today.get(key, 0)))
    t.add_row("hit rate", plain(f"{float(today.get('hit_rate', 0)):.0%}"))
    t.add_row("cost", plain(f"{float(today.get('estimated_cost', 0)):.4f} {currency}"))
    t.add_row("saved by the cache", plain(f"{float(today.get('cost_saved', 0)):.4f} {currency}"))
    ui.print(t)

    totals = cache.get("totals", {})
    c = Table(
        title=f"Cache, last {days} days", box=None, pad_edge=False, header_style="bold", title_justify="left"
    )
    for column in ("day", "requests", "hits", "misses", "hit rate", "saved"):
        c.add_column(column, justify="left" if column == "day" else "right")
    for day in cache.get("days", []):
        c.add_row(
            plain(day.get("day")),
            plain(day.get("requests", 0)),
            plain(day.get("cache_hits", 0)),
            plain(day.get("misses", 0)),
            plain(f"{float(day.get('hit_rate', 0)):.0%}"),
            plain(f"{float(day.get('cost_saved', 0)):.4f}"),
        )
    c.add_row(
        plain("total"),
        plain(totals.get("requests", 0)),
        plain(totals.get("cache_hits", 0)),
        plain(totals.get("misses", 0)),
        plain(f"{float(totals.get('hit_rate', 0)):.0%}"),
        plain(f"{float(totals.get('cost_saved', 0)):.4f} {totals.get('currency', '')}"),
    )
    ui.print(c)

    k = Table(
        title=f"Categories, last {days} days",
        box=None,
        pad_edge=False,
        header_style="bold",
        title_justify="left",
    )
    for column in ("category", "label", "photos", "share"):
        k.add_column(column, justify="right" if column in ("photos", "share") else "left")
    for row in categories.get("categories", []):
        k.add_row(
            plain(row.get("category")),
            plain(f"{row.get('label_en')} / {row.get('label_zh')}"),
            plain(row.get("count", 0)),
            plain(f"{float(row.get('share', 0)):.0%}"),
        )
    ui.print(k)
    ui.info(f"{categories.get('total', 0)} photos classified in the last {days} days")
