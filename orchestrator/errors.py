"""One exception hierarchy for everything a user can get wrong or run into.

Driver errors are translated at the boundary into these, so the CLI can print a one-line
message and exit with a documented code instead of a traceback.
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Base class: a problem the user can act on. `exit_code` is what the CLI returns.

    The CLI prints the message as ONE line, with control characters (a newline in a name the
    user gave, say) escaped, so input can never forge lines of output; only errors that list
    diagnostics, one per line, set `multiline`.
    """

    exit_code = 1
    multiline = False


class UsageError(OrchestratorError):
    """Bad command-line usage (missing path, unknown option value)."""

    exit_code = 2


class ConfigError(OrchestratorError):
    """The configuration (DSN, environment, pipeline files) is not usable."""


class InvalidPipelineFiles(ConfigError):
    """Pipeline files with errors: a count, then one diagnostic per line."""

    multiline = True


class DatabaseUnavailable(OrchestratorError):
    """The database did not answer."""

    exit_code = 3


class SchemaMissing(OrchestratorError):
    """The database lacks the queue layer or the applied pipelines."""

    exit_code = 4


class QueueError(OrchestratorError):
    """A queue operation was refused (unknown queue, invalid name, bad argument)."""


class ContractError(QueueError):
    """A payload or a handler output that breaks a step's declared contract.

    Never retried: a message that breaks a contract goes to the dead-letter queue at once, and
    `start`/`send` refuse the payload before anything is enqueued.
    """


class NotFound(OrchestratorError):
    """An object named by the user (pipeline, step, run, message) does not exist."""
