"""`orchestrator init [DIR]`: a starter project that validates and runs as it is.

Writes `pipelines/hello.yaml` (with the `$schema` line editors use), its handlers module
`handlers/hello.py`, the JSON Schema in `schemas/`, and a CI workflow that validates the
pipelines with their handlers imported. Nothing is overwritten: when any of these files
exists, init names it and writes nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.errors import ConfigError

PIPELINE = """\
# yaml-language-server: $schema=../schemas/pipeline.schema.json
pipeline: hello
description: A starter pipeline; change it, then `orchestrator validate` and `apply`

defaults:
  visibility_timeout: 60s
  timeout: 30s
  retry: {max_attempts: 3, backoff: exponential, initial: 2s, max: 1m}

steps:
  greet:
    description: Make a greeting from the payload's name
    handler: handlers.hello:greet
    next: [record]

  record:
    description: Log the greeting
    handler: handlers.hello:record
"""

HANDLERS = '''\
"""Handlers of pipeline `hello`: each takes the payload and the step context."""

import logging

log = logging.getLogger(__name__)


async def greet(payload, ctx):
    """What it returns is the next step's payload."""
    return {"greeting": f"hello, {payload.get('name', 'world')}"}


async def record(payload, ctx):
    log.info("%s", payload["greeting"])
'''

WORKFLOW = """\
# Checks the pipeline files and their handlers on every push (no database needed).
name: pipelines
on: [push, pull_request]
jobs:
  validate:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with: {python-version: "3.11"}
      - run: pip install orchestrator
      - run: orchestrator validate --import-handlers pipelines
"""

NEXT_STEPS = """\
next:
  cd {where}
  orchestrator validate --import-handlers
  orchestrator apply
  orchestrator send hello '{{"name": "you"}}'
  orchestrator run --drain"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = sub.add_parser(
        "init",
        help="create a starter project (pipeline, handlers, schema, CI workflow)",
        description=(
            "Create pipelines/hello.yaml, handlers/hello.py, schemas/pipeline.schema.json and "
            ".github/workflows/pipelines.yml in DIR (default: the current folder). Existing "
            "files are never overwritten."
        ),
    )
    init.add_argument("directory", nargs="?", default=".", metavar="DIR", help="project folder")
    init.set_defaults(func=_init)


def starter_files() -> dict[str, str]:
    """The files of a starter project, by path relative to its root."""
    from orchestrator.spec.schema import schema_text

    return {
        "pipelines/hello.yaml": PIPELINE,
        "handlers/__init__.py": "",
        "handlers/hello.py": HANDLERS,
        "schemas/pipeline.schema.json": schema_text(),
        ".github/workflows/pipelines.yml": WORKFLOW,
    }


def _init(args: argparse.Namespace) -> int:
    root = Path(args.directory)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} exists and is not a folder")
    files = starter_files()
    taken = [path for path in files if (root / path).exists()]
    if taken:
        raise ConfigError(f"{root} already has {', '.join(taken)}; nothing was written")
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"created {target}")
    print(NEXT_STEPS.format(where=root))
    return 0
