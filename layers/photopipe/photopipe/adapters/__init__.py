"""Adapters: the only modules that talk to AWS. They turn botocore errors into `photopipe.errors`."""
