"""Errors a user can act on: the CLI prints them as one line, no traceback."""


class GraderError(Exception):
    """Bad input from the instructor (roster, lab, options): one line that names the fix."""


class HostError(Exception):
    """A host could not be used (down, auth refused, agent missing): that student's result, not the cohort's end."""

    def __init__(self, message, kind="host"):
        super().__init__(message)
        self.kind = kind
