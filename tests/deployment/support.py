"""What the deployment tests share."""

from __future__ import annotations

import subprocess


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The output of a CLI run that must succeed, without a traceback."""
    code, out, err = result.returncode, result.stdout, result.stderr
    assert code == 0, f"exit {code}\n{out}\n{err}"
    assert "Traceback" not in err, err
    return out
