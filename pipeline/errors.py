"""Errors a user can act on: stages print them as one line and exit non-zero."""


class PipelineError(Exception):
    """A problem with the user's params, inputs or environment, with a hint to fix it."""


class ParamsError(PipelineError):
    """params.yaml holds a value the schema rejects."""


class DataError(PipelineError):
    """A dataset is missing, unreachable or corrupt."""
