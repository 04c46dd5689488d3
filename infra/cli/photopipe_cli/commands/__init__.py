"""The `photopipe` command groups: one module each, with a `register(app)` that adds its commands.

To add a group (e.g. `photopipe admin ...`): write `commands/admin.py` with `register(app)` and list it in
`GROUPS`. Modules import only typer and the standard library at the top; everything heavier is imported
inside the command, so `photopipe --help` stays fast."""

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
    "local",
    "models",
)
