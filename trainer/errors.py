"""The trainer's one user-error type: bad data, a bad config value, a run directory that cannot be used.

The CLI prints its message as one line (exit 2). Bugs are other exceptions and keep their traceback.
"""


class TrainError(ValueError):
    """Training cannot start or go on because of its input; the message says what was wrong and what to do."""
