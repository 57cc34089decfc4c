"""Exceptions the library raises; the CLI maps each to one line on stderr and an exit code.

``InputError`` and its subclasses mean "the user gave something wrong" (exit code 2); anything else that
escapes is a bug in lfp (exit code 1).
"""


class LfpError(Exception):
    """Base class of every error lfp raises on purpose."""

    exit_code = 1


class InputError(LfpError):
    """Bad input from the user: a missing or malformed file, an impossible option value."""

    exit_code = 2


class ConfigError(InputError):
    """A parameter value that cannot be used (negative budget, unknown method, ...)."""


class ArtifactError(InputError):
    """A file that is not the lfp artifact it should be (wrong kind, foreign, truncated, unsafe)."""


class OutputExistsError(InputError):
    """The output file exists and ``--force`` was not given."""


class Interrupted(LfpError):
    """The user pressed Ctrl-C (or the job was sent SIGINT); the message says what was kept for ``--resume``."""

    exit_code = 130
