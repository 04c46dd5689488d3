"""Use cases: what the handlers call. They take collaborators and values, never read the environment."""
