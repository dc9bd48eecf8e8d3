"""User-facing errors: each message names the problem and what to do about it."""


class BenchError(Exception):
    """An error the CLI reports as one line (no traceback) and exits non-zero."""


class ConfigError(BenchError):
    """A suite file, profile file or --set override is malformed."""


class DatasetError(BenchError):
    """A dataset id is unknown, cannot be loaded offline, or fails its declared checks."""


class ResultsError(BenchError):
    """A results file is corrupt; it is reported, never rewritten."""


class ProfileError(BenchError):
    """The machine does not match the declared hardware profile."""
