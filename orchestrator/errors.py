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


# --- failures of one attempt -----------------------------------------------------------------
# What the runtime records in a message's ``headers.errors`` and in its dead letter
# (``error.type`` is the class name) when an attempt fails for a reason of its own. They are
# not OrchestratorErrors: they never reach the CLI, only the message they belong to.


class AttemptFailure(Exception):
    """An attempt failed for a reason the runtime found, not an exception of the handler."""

    permanent = False
    """True when no retry can help: the message is dead-lettered at once."""


class HandlerTimeout(AttemptFailure, TimeoutError):
    """The handler ran past its step's timeout and was cancelled (or, in a thread, abandoned)."""


class InvalidPayload(AttemptFailure):
    """The message body is not a JSON object; no handler can take it."""

    permanent = True


class UndecodableMessage(AttemptFailure):
    """The message body is JSON that PostgreSQL stored but Python cannot decode (a number
    beyond any float, nesting deeper than the decoder allows); the dead letter keeps its text."""

    permanent = True


class InvalidOutput(AttemptFailure):
    """The handler returned something that cannot be the next steps' payload."""

    permanent = True


class InvalidRetryDelay(AttemptFailure):
    """The handler asked for a retry at a time the queue cannot store (``Retry(after=1e13)``)."""

    permanent = True


class WorkerLost(AttemptFailure):
    """The message was read more times than its step allows and its last attempt, run alone,
    never finished: its handler ends the process (``os._exit``, a crash, the OOM killer)."""

    permanent = True


class TransactionAborted(AttemptFailure):
    """The handler caught a database error and returned, leaving its transaction aborted."""


class CommitFailed(AttemptFailure):
    """The batch's COMMIT was refused (e.g. a deferred constraint of a handler's writes)."""


class TooManyAbandoned(OrchestratorError):
    """Too many plain ``def`` handler calls that passed their timeout still run in this
    process: the worker stops (its messages go back) so that its supervisor replaces it."""


class QueueMissing(SchemaMissing):
    """A step queue does not exist (dropped by hand, or the pipeline was never applied)."""
