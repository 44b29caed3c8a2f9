"""The error `tinygpt.evals` raises for a user's bad input: a result row that does not decode, results missing
from one arm of a comparison, a gate config with an unknown key, an output path that belongs to someone else.

The message names the file (and line) and says what to do; the CLI prints it as one line and exits 2.
This module defines the type only.
"""


class EvalError(ValueError):
    """Bad eval input or results that cannot be compared; the message says what was wrong and what to do."""
