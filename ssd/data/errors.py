"""The one error the data stage raises for unusable input."""


class DataError(ValueError):
    """The input cannot be prepared; the message says what is wrong and what to fix."""
