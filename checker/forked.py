"""Numbered jobs run side by side in forked processes: a run's explorations, with
`--workers N`, when it has more than one (`checker.run.check`).

The jobs are what the parent could run itself: each child, forked once at the start,
sees the job function through fork (nothing is pickled to it), runs the job numbers the
parent hands it one at a time, and sends each result back pickled. The parent asks for
the results in order (`result(n)`), so what it reports does not depend on which child
finished first. A job that raised, a result that would not pickle, and a child that died
(killed for memory, say) each come back as a `JobFailed` for that job only.
"""

from __future__ import annotations

import contextlib
import mmap
import multiprocessing
import os
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any


class JobFailed(Exception):
    """A job's result never came: it raised, did not pickle, or its process died."""


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


class Notice:
    """A short text the parent posts and its forked children read: memory shared by the
    fork (the children ignore the run's signals, `checker.cli.Interrupts`, so the parent
    tells them why to stop)."""

    SIZE = 512

    def __init__(self) -> None:
        self.buffer = mmap.mmap(-1, self.SIZE)  # anonymous and shared, before the fork

    def post(self, text: str) -> None:
        data = text.encode()[: self.SIZE - 1] or b"?"
        # the first byte last: a reader sees nothing or the whole text
        self.buffer[1: len(data) + 1] = data[1:] + b"\0"
        self.buffer[0] = data[0]

    def read(self) -> str | None:
        if self.buffer[0] == 0:
            return None
        return bytes(self.buffer).split(b"\0", 1)[0].decode(errors="replace")


class Forked:
    """`workers` forked children running jobs 0..count-1, handed out in order as
    children become free."""

    # How often the parent looks at `poll` while it waits.
    POLL_SECONDS = 0.25

    def __init__(
        self, job: Callable[[int], Any], count: int, workers: int,
        poll: Callable[[], None] | None = None,
    ):
        ctx = multiprocessing.get_context("fork")
        self.poll = poll  # called while waiting (to pass on a stop to the children)
        self.count = count
        self.next = 0  # the next job to hand out
        self.done: dict[int, tuple[bool, Any]] = {}  # job -> (ok, result or why not)
        self.running: dict[Connection, int | None] = {}  # a child's pipe -> its job
        self.children: dict[Connection, Any] = {}  # a child's pipe -> its process
        self.workers = max(1, min(workers, count))
        for _ in range(self.workers):
            mine, theirs = ctx.Pipe()
            child = ctx.Process(target=_serve, args=(job, theirs), daemon=True)
            child.start()
            theirs.close()
            self.children[mine] = child
            self.running[mine] = None
            self._hand_out(mine)

    def result(self, number: int) -> Any:
        """Job `number`'s result (waiting for it), or `JobFailed`."""
        while number not in self.done:
            self._collect()
        ok, value = self.done.pop(number)
        if not ok:
            raise JobFailed(value)
        return value

    def close(self) -> None:
        """Stop every child: those still running a job are killed (their results are no
        longer wanted), the others told there is no more work; all are reaped."""
        for conn, child in self.children.items():
            if self.running.get(conn) is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
            else:
                with contextlib.suppress(OSError):
                    conn.send(None)
        for conn, child in self.children.items():
            child.join()
            conn.close()
        self.children, self.running = {}, {}

    def _hand_out(self, conn: Connection) -> None:
        if self.next < self.count:
            self.running[conn] = self.next
            conn.send(self.next)
            self.next += 1
        else:
            self.running[conn] = None

    def _collect(self) -> None:
        busy = [c for c, job in self.running.items() if job is not None]
        if not busy:
            raise JobFailed("no child is running the job asked for")
        ready = wait(busy, self.POLL_SECONDS if self.poll is not None else None)
        if self.poll is not None:
            self.poll()
        for conn in ready:
            assert isinstance(conn, Connection)
            job = self.running[conn]
            assert job is not None
            try:
                self.done[job] = conn.recv()
            except (EOFError, OSError):  # the child died mid-job
                child = self.children[conn]
                child.join()
                self.done[job] = (False, f"its process died (exit code {child.exitcode})")
                self.running.pop(conn)
                self.children.pop(conn)
                conn.close()
                self._fail_the_rest_if_none_left()
                continue
            self._hand_out(conn)

    def _fail_the_rest_if_none_left(self) -> None:
        """With no child left, the jobs not handed out yet fail too."""
        if self.running:
            return
        while self.next < self.count:
            self.done[self.next] = (False, "no process was left to run it")
            self.next += 1


def _serve(job: Callable[[int], Any], conn: Connection) -> None:
    """A child: run the job numbers received until told to stop (None)."""
    while True:
        try:
            number = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if number is None:
            return
        try:
            out: tuple[bool, Any] = (True, job(number))
        except BaseException as exc:  # the parent reports it for this job only
            out = (False, f"{type(exc).__name__}: {exc}")
        try:
            conn.send(out)
        except Exception as exc:  # the result does not pickle
            conn.send((False, f"its result could not be sent: {type(exc).__name__}: {exc}"))
