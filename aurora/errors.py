"""User-facing errors: each one is a single line that names the problem and what to do.

The CLI prints these without a traceback and exits with code 2; anything else is a bug and
keeps its traceback.
"""


class AuroraError(Exception):
    """A mistake in what the user asked for (bad input, missing file, bad option)."""


class MediaError(AuroraError):
    """A video or image that cannot be opened or decoded."""


class CheckpointError(AuroraError):
    """A checkpoint that is missing, partial, or in a layout Aurora does not know."""


class ConfigError(AuroraError):
    """An option or configuration value outside its valid range."""


class AuroraWarning(UserWarning):
    """What the user asked for runs, but not quite as asked (the CLI prints it as one line)."""
