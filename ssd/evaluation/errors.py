"""The one exception type of the evaluation stage."""

from __future__ import annotations


class EvaluationError(ValueError):
    """The evaluation cannot run on this input; the message says what is wrong and how to fix it.

    Raised for a missing checkpoint, a missing or empty split, and a detector whose classes
    differ from the prepared dataset's ``classes.json``.
    """
