"""One exception type for every problem a user can fix.

The CLI turns it into a single line on stderr and a non-zero exit; the app shows it as a message.
Anything else that escapes is a bug, and is allowed to show a traceback.
"""


class LRCError(Exception):
    """A problem with the user's input or environment, with a message that says how to fix it."""


class ConfigError(LRCError, ValueError):
    """A configuration value is out of range or inconsistent."""


class DataError(LRCError):
    """Data is missing, malformed, or lacks the columns a task needs."""


class ModelLoadError(LRCError):
    """A model id or path could not be loaded as a BERT-like encoder."""
