"""`photopipe credits|packages|buy|pay simulate`: enhancement credits, and buying more with WeChat Pay.

`buy` creates a native (QR code) order and shows its `code_url` as a QR code in the terminal; `--wait`
follows the order to its end over live updates (`order.updated`). `pay simulate` pays an order through the
local stack's WeChat Pay sandbox, which sends a signed, encrypted notify to the API's real callback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from photopipe_cli.options import ApiOption, JsonOption

if TYPE_CHECKING:
    from photopipe_cli.api import Api
    from photopipe_cli.ui import Ui

PAGE = 100  # the API's largest page
ORDER_FINAL = frozenset({"paid", "closed", "failed", "review"})
SANDBOX_PAY = "/sandbox/wechatpay/orders/{order_id}/pay"  # the local gateway's route (not under /api/v1)

pay = typer.Typer(help="Payments on the local stack's WeChat Pay sandbox.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("credits")(credits_)
    app.command("packages")(packages)
    app.command("buy")(buy)
    app.add_typer(pay, name="pay")


def _price(amount: object, currency: object = "CNY") -> str:
    """Fen as a person reads them: 100 -> ¥1.00."""
    if not isinstance(amount, int):
        return "-"
    sign = "¥" if currency == "CNY" else f"{currency} "
    return f"{sign}{amount // 100}.{amount % 100:02d}"


# --------------------------------------------------------------------------------------- credits


def credits_(
    limit: Annotated[int, typer.Option(min=1, help="At most this many ledger entries.")] = 20,
    all_: Annotated[bool, typer.Option("--all", help="The whole ledger (follows every page).")] = False,
    api: ApiOption = None,
    json_: JsonOption = False,
) -> None:
    """Show your credit balance and ledger, newest first.

    One credit enhances one photo; new accounts start with free credits; `photopipe buy` adds more."""
    from photopipe_cli.context import Ctx

    ctx = Ctx(api=api, json_mode=json_)
    client = ctx.client()
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        want = PAGE if all_ else min(PAGE, limit - len(entries))
        page = client.get("/credits", params={"limit": want, "cursor": cursor})
        entries += page.get("entries", [])
        balance = page.get("balance")
        cursor = page.get("next_cursor")
        if not cursor or (not all_ and len(entries) >= limit):
            break
    if json_:
        ctx.ui.emit({"balance": balance, "entries": entries, "count": len(entries), "next_cursor": cursor})
        return
    ctx.ui.fields([("balance", f"{balance} credit{'s' if balance != 1 else ''}")])
    if entries:
        _ledger(ctx.ui, entries)
    more = "; more with --all" if cursor else ""
    ctx.ui.info(f"{len(entries)} ledger entr{'ies' if len(entries) != 1 else 'y'}{more}")


def ledger_rows(entries: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    from photopipe_cli.commands.library import _date

    return [
        (
            _date(entry.get("at")),
            str(entry.get("kind")),
            f"{entry.get('amount', 0):+d}",
            str(entry.get("reason") or "-"),
            str(entry.get("order_id") or entry.get("job_id") or "-"),
        )
        for entry in entries
    ]


def _ledger(ui: Ui, entries: list[dict[str, Any]]) -> None:
    """A table on a terminal; tab-separated lines when piped (like `photopipe list`)."""
    from rich.table import Table

    from photopipe_cli.ui import plain

    rows = ledger_rows(entries)
    if not ui.out.is_terminal:
        import sys

        sys.stdout.writelines("\t".join(row) + "\n" for row in rows)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("DATE", "KIND", "CREDITS", "REASON", "ORDER / JOB"):
        table.add_column(column, justify="right" if column == "CREDITS" else "left")
    for row in rows:
        table.add_row(*(plain(cell) for cell in row))
    ui.print(table)


# -------------------------------------------------------------------------------------- packages


def packages(api: ApiOption = None, json_: JsonOption = False) -> None:
    """List the credit packages you can buy (`photopipe buy PACKAGE`)."""
    from photopipe_cli.context import Ctx

    ctx = Ctx(api=api, json_mode=json_)
    _packages(ctx.ui, ctx.client())


def _packages(ui: Ui, client: Api) -> None:
    from rich.table import Table

    from photopipe_cli.ui import plain

    listing = client.get("/payments/packages", auth=False)
    if ui.json:
        ui.emit(listing)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("PACKAGE", "CREDITS", "PRICE", "DESCRIPTION"):
        table.add_column(column, justify="right" if column in ("CREDITS", "PRICE") else "left")
    for p in listing.get("packages", []):
        table.add_row(
            plain(p.get("package_id")),
            plain(p.get("credits")),
            plain(p.get("price") or _price(p.get("amount"), p.get("currency"))),
            plain(p.get("description")),
        )
    ui.print(table)
    if listing.get("payments_enabled") is False:
        ui.warn(f"payments are not configured on {client.server.url}: nothing can be bought there")
    else:
        ui.info("Buy one with: photopipe buy PACKAGE")


# ------------------------------------------------------------------------------------------- buy


def buy(
    package: Annotated[
        str | None,
        typer.Argument(metavar="[PACKAGE]", help="A package id from `photopipe packages` (none: list them)."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the payment (live updates) and show the new balance.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=1, help="With --wait: give up after this many seconds.")
    ] = 900,
    api: ApiOption = None,
    json_: JsonOption = False,
) -> None:
    """Buy a credit package with WeChat Pay: shows a QR code to scan.

    Creates a native order and prints the package, amount, order id and the payment link as a QR code.
    With --wait, follows the order until it is paid (or closed) and shows the balance; the exit code is 1
    when it does not end paid. On the local stack, pay it with `photopipe pay simulate ORDER_ID`.
    --json prints the order (with --wait, as it ended)."""
    from photopipe_cli.context import Ctx

    ctx = Ctx(api=api, json_mode=json_)
    client = ctx.client()
    if package is None:
        _packages(ctx.ui, client)
        return
    live = _live(client, ctx.ui) if wait else None
    try:
        order = client.post("/payments/orders", {"package_id": package, "method": "native"})
        if not json_:
            _show_order(ctx.ui, order)
        if live is not None:
            order = _follow(ctx.ui, client, live, order, timeout)
    finally:
        if live is not None:
            live.close()
    if json_:
        ctx.ui.emit(order)
    if wait:
        _ended(ctx.ui, client, order)


def _show_order(ui: Ui, order: dict[str, Any]) -> None:
    ui.fields(
        [
            ("package", f"{order.get('package_id')} ({order.get('credits')} credits)"),
            ("amount", _price(order.get("amount"), order.get("currency"))),
            ("order id", order.get("order_id")),
            ("expires", order.get("expires_at")),
            ("pay link", order.get("code_url")),
        ]
    )
    code_url = order.get("code_url")
    if code_url:
        ui.out.file.write(qr_text(str(code_url)))
        ui.out.file.flush()
        ui.info("Scan the code with WeChat to pay.")
    ui.info(f"On the local stack: photopipe pay simulate {order.get('order_id')}")


def qr_text(data: str) -> str:
    """`data` as a QR code drawn with Unicode half blocks (two rows a line), a quiet zone around it."""
    import io

    import segno

    out = io.StringIO()
    segno.make(data, error="m", micro=False).terminal(out=out, compact=True, border=2)
    return out.getvalue()


def _live(client: Api, ui: Ui) -> Any:
    from photopipe_cli.live import ORDERS, LiveUpdates, endpoint

    return LiveUpdates(endpoint(client), client.token(), on_notice=ui.info, types=ORDERS).open()


def _follow(ui: Ui, client: Api, live: Any, order: dict[str, Any], timeout: float) -> dict[str, Any]:
    """The order once it is final: from `order.updated` messages; after a reconnect, one GET catches up."""
    import time

    from photopipe_cli.errors import CliError
    from photopipe_cli.live import Failed, Lost, Reconnected

    order_id = str(order["order_id"])
    deadline = time.monotonic() + timeout
    ui.info("Waiting for the payment...")
    while str(order.get("state")) not in ORDER_FINAL:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CliError(
                f"order {order_id} is still {order.get('state')} after {timeout:g} s",
                hint=f"Check it later with `photopipe buy` --json, or GET /api/v1/payments/orders/{order_id}.",
            )
        event = live.next(min(left, 1.0))
        if isinstance(event, Failed):
            raise event.error
        if isinstance(event, Reconnected) or (
            isinstance(event, dict)
            and event.get("type") == "order.updated"
            and event.get("order_id") == order_id
        ):
            order = client.get(f"/payments/orders/{order_id}")
        elif event is None or isinstance(event, Lost):
            continue
    return order


def _ended(ui: Ui, client: Api, order: dict[str, Any]) -> None:
    from photopipe_cli.errors import CliError

    state = order.get("state")
    if state != "paid":
        reason = f" ({order['review_reason']})" if order.get("review_reason") else ""
        raise CliError(f"order {order.get('order_id')} ended {state}{reason}: no credits were added")
    balance = client.get("/credits", params={"limit": 1}).get("balance")
    ui.success(f"Paid: {order.get('credits')} credits added; your balance is {balance}.")


# ------------------------------------------------------------------------------------ pay simulate


@pay.command("simulate")
def simulate(
    order_id: Annotated[str, typer.Argument(metavar="ORDER_ID", help="From `photopipe buy`.")],
    api: ApiOption = None,
    json_: JsonOption = False,
) -> None:
    """Pay an order through the local stack's WeChat Pay sandbox (no money, no phone).

    The sandbox marks the order paid and sends the API the signed, encrypted notify WeChat Pay would,
    so the credits arrive through the real callback. Only a local stack (`make run`) has the sandbox;
    any other server is refused."""
    from photopipe_cli.context import Ctx
    from photopipe_cli.errors import CliError

    ctx = Ctx(api=api, json_mode=json_)
    _refuse_without_sandbox(ctx.server.url)
    client = ctx.client()
    response = client.send_to("POST", ctx.server.url + SANDBOX_PAY.format(order_id=_safe(order_id)), json={})
    result = _sandbox_answer(ctx.server.url, order_id, response)
    if json_:
        ctx.ui.emit(result)
    if not result.get("paid"):
        raise CliError(
            f"the sandbox paid order {order_id}, but the API refused its notify "
            f"(HTTP {result.get('notify_status')}): no credits were added"
        )
    if not json_:
        ctx.ui.success(f"Order {order_id} paid through the WeChat Pay sandbox; the API accepted the notify.")


def _safe(order_id: str) -> str:
    from urllib.parse import quote

    return quote(order_id.strip(), safe="")


def _refuse_without_sandbox(server_url: str) -> None:
    """A running local stack serving `server_url` without its sandbox: refuse before sending anything."""
    from photopipe_cli.errors import CliError
    from photopipe_cli.local_stack import StackNotRunningError, read_state
    from photopipe_local.stack import default_state_file

    try:
        state = read_state(default_state_file("template.yaml"))
    except StackNotRunningError:
        return  # no state file here: the server's answer says whether it has the sandbox
    if state.api_url == server_url and not state.wechat_sandbox:
        raise CliError(
            f"the local stack at {server_url} runs without the WeChat Pay sandbox",
            hint="Start it with `make run` (the sandbox is on unless the template has no WechatPaySecret).",
        )


def _sandbox_answer(server_url: str, order_id: str, response: Any) -> dict[str, Any]:
    from photopipe_cli.api import _error_body
    from photopipe_cli.errors import CliError, NotFound

    code, message = _error_body(response) if response.status_code >= 400 else ("", "")
    if response.status_code == 404 and code == "no_such_order":
        raise NotFound(
            f"the sandbox has no order {order_id!r}", hint="Create one with `photopipe buy PACKAGE`."
        )
    if response.status_code in (403, 404, 405) or (
        response.status_code < 400 and "paid" not in _json_or_empty(response)
    ):
        raise CliError(
            f"{server_url} is not a local stack with a WeChat Pay sandbox (POST "
            f"{SANDBOX_PAY.format(order_id='ID')} answered HTTP {response.status_code})",
            hint="`pay simulate` works only on the local stack (`make run`); pay a real order with WeChat.",
        )
    if response.status_code >= 400:
        raise CliError(f"the sandbox refused to pay order {order_id}: {message}")
    return _json_or_empty(response)


def _json_or_empty(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
