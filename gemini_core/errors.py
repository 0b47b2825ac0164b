"""Errors a user can act on.

Every problem caused by input (a file, a flag, a ratio) is raised as ``GeminiError`` with a
message that names the problem; the CLI prints it as one line and the dashboard shows it in
the page. Anything else is a bug and keeps its traceback.
"""


class GeminiError(ValueError):
    """A problem with the user's input or files, explained in the message."""


class ConfigError(GeminiError):
    """A compression or sweep setting that cannot be applied."""


class DataError(GeminiError):
    """A data file or folder that cannot be used as given."""


class CheckpointError(GeminiError):
    """A model or checkpoint that is missing, tampered with or unsafe to load."""


class Cancelled(GeminiError):
    """The user stopped the work; nothing half-done was kept."""
