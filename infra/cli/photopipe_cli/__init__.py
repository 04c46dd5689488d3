"""The `photopipe` command: `photopipe local ...` (the local stack), `photopipe models ...` (the exporter).
Not part of the Lambda layer: it imports the runtime package, never the reverse."""
