"""A local SMTP sink: accepts mail over SMTP and keeps it in memory (for the demo and tests).

It speaks the subset of SMTP (RFC 5321) that mail clients such as smtplib use: HELO, EHLO,
MAIL, RCPT, DATA (with dot-unstuffing), RSET, NOOP, VRFY, HELP and QUIT; no TLS, no AUTH.
Recipients whose local part starts with ``bounce`` are refused permanently (550) and those
starting with ``defer`` temporarily (450), so clients' error handling can be tried.

The server runs on its own event loop in a background thread (`start()` / `stop()`), so it
serves the same way under synchronous and asynchronous callers.

Run it alone with ``python -m pipelines.standins.smtp [--port 2525]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

MAX_SIZE = 10 * 1024 * 1024
LINE_LIMIT = 64 * 1024
IDLE_TIMEOUT = 60.0


@dataclass(frozen=True)
class ReceivedMail:
    """One accepted mail: envelope and content."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")


def _address(argument: str, keyword: str) -> str | None:
    """The address of `FROM:<a@b> PARAMS` / `TO:<a@b>`; None when malformed."""
    head, sep, rest = argument.partition(":")
    if not sep or head.strip().upper() != keyword:
        return None
    rest = rest.strip()
    if rest.startswith("<"):
        end = rest.find(">")
        return rest[1:end] if end > 0 else None
    return rest.split()[0] if rest else None


@dataclass
class _Envelope:
    mail_from: str | None = None
    rcpt_tos: list[str] = field(default_factory=list)


class SmtpSink:
    """The sink: `start()` listens on (host, port); `messages` holds what was accepted."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.hostname = socket.getfqdn() if host not in {"127.0.0.1", "localhost"} else "localhost"
        self._messages: list[ReceivedMail] = []
        self._changed = threading.Condition()
        self.sessions = 0
        self.refused_recipients = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> SmtpSink:
        """Listen (in a background thread) and return once connections are accepted."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._session, self.host, self.port, limit=LINE_LIMIT)
                )
            except OSError as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="smtp-sink", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, server, thread = self._loop, self._server, self._thread
        if loop is None or thread is None or server is None:
            return

        async def close() -> None:
            # Closing the connections ends their sessions normally (cancelling them instead
            # trips a 3.11 asyncio callback that logs the cancellation as an error).
            server.close()
            for writer in list(self._writers):
                writer.close()
            sessions = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if sessions:
                await asyncio.wait(sessions, timeout=5)
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._server = self._thread = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what was received ---------------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._changed:
            return list(self._messages)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMail]:
        """Wait until at least `count` mails arrived (or `timeout`); return all of them."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._messages) >= count, timeout=timeout)
            return list(self._messages)

    def stats(self) -> dict[str, Any]:
        received = self.messages
        ids = {m.message["Message-ID"] for m in received}
        return {
            "messages": len(received),
            "unique_message_ids": len(ids - {None}),
            "sessions": self.sessions,
            "refused_recipients": self.refused_recipients,
        }

    def _store(self, mail: ReceivedMail) -> int:
        with self._changed:
            self._messages.append(mail)
            self._changed.notify_all()
            return len(self._messages)

    # -- the protocol --------------------------------------------------------------------------

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        self._writers.add(writer)

        async def reply(text: str) -> None:
            writer.write(text.encode("utf-8") + b"\r\n")
            await writer.drain()

        try:
            await reply(f"220 {self.hostname} ESMTP orchestrator SMTP sink")
            envelope = _Envelope()
            while True:
                line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
                if not line:
                    return
                verb, _, argument = line.decode("utf-8", "replace").strip().partition(" ")
                answer = await self._command(verb.upper(), argument, envelope, reader, writer)
                await reply(answer)
                if answer.startswith("221"):
                    return
        except (TimeoutError, ConnectionError, ValueError, asyncio.IncompleteReadError):
            return  # idle, gone or over the line limit: drop the connection
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _command(
        self,
        verb: str,
        argument: str,
        envelope: _Envelope,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> str:
        if verb == "HELO":
            return f"250 {self.hostname}"
        if verb == "EHLO":
            features = ["8BITMIME", "SMTPUTF8", f"SIZE {MAX_SIZE}"]
            return "\r\n".join(
                [f"250-{self.hostname}", *(f"250-{f}" for f in features), "250 HELP"]
            )
        if verb == "MAIL":
            return self._mail(argument, envelope)
        if verb == "RCPT":
            return self._rcpt(argument, envelope)
        if verb == "DATA":
            if not envelope.rcpt_tos:
                return "503 5.5.1 Error: need RCPT command"
            writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            await writer.drain()
            return await self._data(envelope, reader)
        if verb == "RSET":
            envelope.mail_from, envelope.rcpt_tos = None, []
            return "250 2.0.0 Ok"
        if verb == "NOOP":
            return "250 2.0.0 Ok"
        if verb == "VRFY":
            return "252 2.0.0 Cannot VRFY user, but will accept message"
        if verb == "HELP":
            return "214 HELO EHLO MAIL RCPT DATA RSET NOOP VRFY QUIT"
        if verb == "QUIT":
            return "221 2.0.0 Bye"
        return f"500 5.5.2 Error: command not recognized: {verb[:20]}"

    @staticmethod
    def _mail(argument: str, envelope: _Envelope) -> str:
        if envelope.mail_from is not None:
            return "503 5.5.1 Error: nested MAIL command"
        sender = _address(argument, "FROM")
        if sender is None:
            return "501 5.5.4 Syntax: MAIL FROM:<address>"
        envelope.mail_from = sender
        return "250 2.1.0 Ok"

    def _rcpt(self, argument: str, envelope: _Envelope) -> str:
        if envelope.mail_from is None:
            return "503 5.5.1 Error: need MAIL command"
        recipient = _address(argument, "TO")
        if not recipient:
            return "501 5.5.4 Syntax: RCPT TO:<address>"
        local = recipient.partition("@")[0].lower()
        if local.startswith("bounce"):
            self.refused_recipients += 1
            return f"550 5.1.1 <{recipient}>: mailbox unavailable"
        if local.startswith("defer"):
            self.refused_recipients += 1
            return f"450 4.2.1 <{recipient}>: mailbox busy, try again later"
        envelope.rcpt_tos.append(recipient)
        return "250 2.1.5 Ok"

    async def _data(self, envelope: _Envelope, reader: asyncio.StreamReader) -> str:
        """Read the content up to the lone dot; the answer is the reply to the whole DATA."""
        lines: list[bytes] = []
        size = 0
        while True:
            line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
            if not line:
                raise ConnectionError("client left during DATA")
            if line in (b".\r\n", b".\n"):
                break
            if line.startswith(b"."):
                line = line[1:]
            size += len(line)
            if size <= MAX_SIZE:
                lines.append(line)
        mail_from, rcpt_tos = envelope.mail_from or "", tuple(envelope.rcpt_tos)
        envelope.mail_from, envelope.rcpt_tos = None, []
        if size > MAX_SIZE:
            return "552 5.3.4 Error: message too big"
        number = self._store(ReceivedMail(mail_from, rcpt_tos, b"".join(lines)))
        return f"250 2.0.0 Ok: queued as {number}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    args = parser.parse_args(argv)
    sink = SmtpSink(args.host, args.port)
    try:
        sink.start()
    except OSError as exc:
        parser.exit(1, f"smtp sink: error: {exc}\n")
    print(f"SMTP sink listening on {args.host}:{sink.port} (Ctrl-C stops it)", flush=True)
    seen = 0
    try:
        while True:
            received = sink.wait_for(seen + 1, timeout=1.0)
            for mail in received[seen:]:
                print(f"{mail.mail_from} -> {', '.join(mail.rcpt_tos)}: {mail.subject}", flush=True)
            seen = len(received)
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
