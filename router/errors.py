"""The router's one user-facing error type."""


class RouterError(ValueError):
    """Bad labelled data, a missing or damaged router directory, bad settings. The message is one line that says
    what was wrong and what to do."""
