"""The one exception type for mistakes a user can make (paths, files, parameters)."""


class WlmError(Exception):
    """A problem with the user's input; the message says what was wrong and how to fix it."""
