"""Decoding and encoding large bodies in codec worker processes, off the event loop.

orjson's parser and numpy's conversion of nested lists hold the GIL for the whole call
(measured: one 32 MB body kept every other thread of the process waiting 0.39 s in
``orjson.loads`` and 0.6 s in ``np.array``), so a thread would not keep the event loop free; a
process does. ``CpuOffload.run(size, deadline, function, *args)`` runs ``function(*args)``
inline for small bodies and in a codec process for large ones.

The hand-off: the server writes frames (an 8-byte length, then a pickle of ``(function,
args)``) to the codec process's stdin and reads ``(ok, result or exception)`` back from its
stdout. Both ends are this package's own code, so the pickles are trusted. This module and the
modules whose functions travel (``validation``, ``v2_codec``) import neither ONNX Runtime nor
FastAPI, so a codec process starts fast and stays small.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
import traceback
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from service.errors import DeadlineExceeded, ServiceError, Unavailable

FRAME = struct.Struct("<Q")
"""Each message between the server and a codec process: its length, then a pickle."""

R = TypeVar("R")
_WORKER_COMMAND = (
    "from service.frontend.api.offload import serve_offloaded_calls; serve_offloaded_calls()"
)
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])
_PIPE_BYTES = 1024 * 1024  # fs.pipe-max-size default: fewer wake-ups per body than 64 KiB


class _WorkerDied(Exception):
    """The codec process closed its pipes in the middle of a call."""


class _CodecWorker:
    """One codec process (``serve_offloaded_calls``) and its pipes; one call at a time."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WORKER_COMMAND],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        for pipe in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError, AttributeError):  # Linux only; a speed-up
                fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)  # type: ignore[arg-type]

    def call(self, function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
        """Send the call and wait for ``(ok, result or exception)``. Blocking: it runs in a
        thread, where the pipe reads and writes release the GIL."""
        requests, replies = self.process.stdin, self.process.stdout
        assert requests is not None and replies is not None
        payload = pickle.dumps((function, args), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            requests.write(FRAME.pack(len(payload)))
            requests.write(payload)
            requests.flush()
            head = replies.read(FRAME.size)
            if len(head) == FRAME.size:
                (size,) = FRAME.unpack(head)
                data = replies.read(size)
                if len(data) == size:
                    reply: tuple[bool, Any] = pickle.loads(data)
                    return reply
        except (OSError, ValueError):  # a broken pipe, or pipes closed by stop()
            pass
        raise _WorkerDied(f"codec process {self.process.pid} exited ({self.process.poll()})")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                # Closing flushes what a failed write left buffered: EPIPE, the process is gone.
                with contextlib.suppress(OSError):
                    pipe.close()


def _stop_all(workers: set[_CodecWorker]) -> None:
    for worker in list(workers):
        worker.stop()
    workers.clear()


class CpuOffload:
    """Runs the CPU-heavy decoding and encoding of large bodies in codec worker processes.

    orjson's parser and numpy's conversion of nested lists hold the GIL for the whole call
    (measured: one 32 MB body kept every other thread of the process waiting 0.39 s in
    ``orjson.loads`` and 0.6 s in ``np.array``), so a thread would not keep the event loop
    free; a process does. A call is ``function(*args)`` for a function of a module that imports
    neither ONNX Runtime nor FastAPI (``validation``, ``v2_codec``): it travels as a pickle, and
    its result (or the ``ServiceError`` it raised) comes back the same way; only the pipe I/O,
    in a thread, and two memory copies touch this process. Calls on fewer than ``min_bytes``
    run inline: a small body decodes faster than the hop. Processes start on first use; a call
    that outlives the request's deadline kills its process (nothing else stops it), and one
    whose process dies answers 503; the next call starts a new one.
    """

    def __init__(self, processes: int, min_bytes: int, retry_after_s: int = 1) -> None:
        self.processes = processes
        self.min_bytes = min_bytes
        self.retry_after_s = retry_after_s
        self._idle: list[_CodecWorker] = []
        self._workers: set[_CodecWorker] = set()
        self._slots = asyncio.Semaphore(max(1, processes))
        self._finalizer = weakref.finalize(self, _stop_all, self._workers)

    @property
    def pids(self) -> list[int]:
        """The codec processes running now."""
        return [worker.process.pid for worker in self._workers]

    async def run(self, size: int, deadline: float, function: Callable[..., R], *args: Any) -> R:
        """``function(*args)``: inline when ``size`` (bytes of the body or the response) is
        under ``min_bytes`` or there are no codec processes, else in one of them. 504 when
        ``deadline`` (``time.monotonic()``) passes first."""
        if not self.processes or size < self.min_bytes:
            return function(*args)
        timeout = asyncio.timeout(max(0.0, deadline - time.monotonic()))
        try:
            async with timeout, self._slots:
                ok, value = await self._call(function, args)
        except TimeoutError:
            if timeout.expired():
                raise DeadlineExceeded(
                    "decoding or encoding did not finish before the request deadline"
                ) from None
            raise
        if not ok:
            raise value
        result: R = value
        return result

    async def _call(self, function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
        while self._idle and self._idle[-1].process.poll() is not None:
            self._workers.discard(dead := self._idle.pop())  # died while idle: replace it
            dead.stop()
        if self._idle:
            worker = self._idle.pop()
        else:
            try:
                worker = _CodecWorker()
            except OSError as error:  # no process to be had now (EMFILE, ENOMEM, EAGAIN)
                raise Unavailable(
                    f"no codec process could be started ({error.strerror}); retry",
                    {"Retry-After": str(self.retry_after_s)},
                ) from None
            self._workers.add(worker)
        try:
            reply = await asyncio.to_thread(worker.call, function, args)
        except BaseException as error:
            # Cancelled (the deadline), dead, or the call could not be sent: its pipes may hold
            # half a frame, so this process is done with.
            self._workers.discard(worker)
            worker.stop()
            if isinstance(error, _WorkerDied):
                raise Unavailable(
                    "the codec process stopped while handling this request; retry",
                    {"Retry-After": str(self.retry_after_s)},
                ) from None
            raise
        self._idle.append(worker)
        return reply

    def close(self) -> None:
        """Stop the codec processes (also done when this object is collected, or at exit)."""
        self._finalizer()


# -- the codec process's side ----------------------------------------------------------------------
def serve_offloaded_calls() -> None:
    """The loop of a codec worker process (started by ``CpuOffload``).

    Reads frames ``(function, args)`` (an 8-byte length, then a pickle) from stdin, and answers
    each with ``(True, result)`` or ``(False, exception)`` on the original stdout. Exits when
    stdin closes: the server closed it, or died. Signals meant for the server (Ctrl-C reaches
    the whole process group, a drain sends SIGTERM) are ignored: the server drains first, then
    closes the pipe.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not corrupt the frames
    requests = sys.stdin.buffer
    while True:
        head = requests.read(FRAME.size)
        if len(head) < FRAME.size:
            return
        (size,) = FRAME.unpack(head)
        payload = requests.read(size)
        if len(payload) < size:
            return
        try:
            function, args = pickle.loads(payload)
            reply: tuple[bool, Any] = (True, function(*args))
        except ServiceError as error:
            reply = (False, error)
        except Exception as error:  # a bug: log the trace here, where it happened
            traceback.print_exc()
            reply = (False, RuntimeError(f"{type(error).__name__}: {error}"))
        data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        replies.write(FRAME.pack(len(data)))
        replies.write(data)
        replies.flush()
