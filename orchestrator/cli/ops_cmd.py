"""Commands contributed by this module are registered in `register`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """No commands yet."""
