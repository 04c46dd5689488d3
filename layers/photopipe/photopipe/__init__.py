"""photopipe: the shared package every Lambda function, the local stack and the CLI import."""

__version__ = "0.1.0"
