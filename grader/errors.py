"""Errors a user can act on: the CLI prints them as one line, no traceback."""


class GraderError(Exception):
    """Bad input from the instructor (roster, lab, options): one line that names the fix."""


class WriteError(GraderError):
    """The results folder could not be created or written (exit 3): nothing already recorded is lost."""


class ResultsBusy(GraderError):
    """Another grader holds the results folder (exit 2): two runs would grade every student twice."""


class HostError(Exception):
    """A host could not be used (down, auth refused, agent missing): that student's result, not the cohort's end."""

    def __init__(self, message, kind="host"):
        super().__init__(message)
        self.kind = kind
