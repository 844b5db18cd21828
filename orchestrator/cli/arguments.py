"""Argument types shared by the commands: durations, counts, ports.

Each raises `argparse.ArgumentTypeError` with a message argparse prefixes with the option
(``argument --workers: must be at least 1, got 0``).
"""

from __future__ import annotations

import argparse


def duration(text: str) -> float:
    """A duration argument (30s, 5m, 2h, 7d, '1 day', or plain seconds) in seconds."""
    from orchestrator.spec.durations import parse_duration

    try:
        return parse_duration(float(text) if _is_number(text) else text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_duration(text: str) -> float:
    """A duration above zero."""
    seconds = duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be longer than 0 (got {text!r})")
    return seconds


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def port(text: str) -> int:
    """A TCP port number."""
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (1-65535), got {value}")
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
