"""The project's own exceptions: expected failures that get a one-line message, no traceback."""


class MnistCodecError(Exception):
    """Base class for every error the pipeline reports to its user."""


class ParamsError(MnistCodecError):
    """A key or value in params.yaml is unknown or out of range."""


class DataError(MnistCodecError):
    """A data file is missing, corrupt, or not what it claims to be."""


class TrainingError(MnistCodecError):
    """Training diverged or cannot run as asked."""


class GateError(MnistCodecError):
    """The metrics gate could not compare (bad rules or files)."""
