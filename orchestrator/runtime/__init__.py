"""The runtime: workers that execute pipeline steps.

Owns: the step context, the atomic fenced hand-off, retries and dead letters, lease extension,
wake-ups, supervision of processes, graceful shutdown. Talks to Postgres only through the queue
layer and its own hand-off SQL; never parses YAML itself.

The core, per step inside one process: `StepConsumer` (consumer.py) reads batches and hands
them off through the store's SQL functions (handoff.py); `retry.py` is the retry policy;
`context.py` what handlers get and raise; `api.py` starts runs from code.
"""

from orchestrator.runtime.api import start, start_many
from orchestrator.runtime.consumer import StepConsumer
from orchestrator.runtime.context import Fail, Retry, StepContext

__all__ = ["Fail", "Retry", "StepConsumer", "StepContext", "start", "start_many"]
