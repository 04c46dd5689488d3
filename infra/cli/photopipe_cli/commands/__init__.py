"""The `photopipe` command groups: one module each, with a `register(app)` that adds its commands.

To add a group (e.g. `photopipe admin grant USERNAME`): write `commands/admin.py` with a `typer.Typer()` and
`register(app)` doing `app.add_typer(admin, name="admin")`, and list it in `GROUPS`. To add to an existing
group (e.g. `photopipe local dlq list|show|redrive`): a module whose `register(app)` calls
`commands.local.local.add_typer(dlq, name="dlq")`, listed after "local". A command starts from
`photopipe_cli.context.Ctx(api=..., json_mode=...)` (its `ui`, `server`, `client()`), takes the shared
`--api`/`--json` options from `photopipe_cli.options`, and raises `photopipe_cli.errors.CliError` (or a
subclass) to fail with a message and an exit code. Modules import only typer and the standard library at
the top; everything heavier is imported inside the command, so `photopipe --help` stays fast."""

GROUPS = (
    "account",
    "upload",
    "library",
    "enhance",
    "watch",
    "stats",
    "compress",
    "restore",
    "camera",
    "config",
    "credits",
    "admin",
    "local",
    "dlq",
    "models",
)
