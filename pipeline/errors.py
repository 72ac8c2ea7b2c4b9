"""Errors a user can act on: stages print them as one line and exit non-zero."""


class PipelineError(Exception):
    """A problem with the user's params, inputs or environment, with a hint to fix it."""


class ParamsError(PipelineError):
    """params.yaml holds a value the schema rejects."""


class DataError(PipelineError):
    """A dataset is missing, unreachable or corrupt."""


class Stopped(BaseException):
    """SIGTERM or SIGINT arrived (`stages/runner.py` raises it from its signal handler).

    A BaseException like KeyboardInterrupt, so no `except Exception` in the library
    swallows it; unlike KeyboardInterrupt, Lightning does not turn it into `exit(1)`."""

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(name)
        self.signum = signum
        self.name = name
