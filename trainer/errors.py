"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""


class PriorPathError(Exception):
    """A problem with the user's input or environment, stated so the user can act on it."""


class Cancelled(PriorPathError):
    """A long job stopped because its cancel token was set."""
