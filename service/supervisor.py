"""The process model of ``python -m service`` beyond one process: N HTTP frontends on one
listening socket, and (with ``engine=separate``) one engine process per device.

```
clients ──HTTP──► frontends (N) ──ZeroMQ IPC──► engine per device (sessions, batchers)
```

The supervisor starts the engines and waits until each serves, then the frontends. It restarts
what dies, and stops in order:

* a frontend that dies (a crash, ``kill -9``, the OOM killer) is replaced; no other frontend's
  request is touched (each talks to the engine on its own connection);
* an engine that dies, or exits because a batch hung or a batcher died (status 4), is
  replaced at the same address; meanwhile the frontends answer 503 with Retry-After and
  readiness says so. An engine that cannot start again is retried with a growing pause;
* any process's live gauges are forgotten when it is reaped, or /metrics would go on summing
  a dead engine's last queue depth;
* a process that fails at the first start stops everything (the next would fail alike): 3;
* SIGTERM or SIGINT: the frontends drain first (stop accepting, answer what they accepted,
  which needs the engines), then the engines. Exit 0 only if every process drained cleanly.
  A second signal stops the frontends at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import uvicorn
from uvicorn.server import HANDLED_SIGNALS

from service.engine.process import run_engine
from service.exit_status import NOT_ALL_ANSWERED, STARTUP_FAILURE
from service.frontend.server import DrainingServer
from service.logs import configure_logging
from service.metrics import forget_process
from service.settings import Settings

log = logging.getLogger("service")

RESTART_PAUSE_S = (0.0, 1.0, 2.0, 5.0, 10.0)
CRASH_LOOP_S = 10.0
"""An engine that exits within this long of its start counts as a failed start."""
STOP_GRACE_S = 15.0
"""After SIGTERM, how much longer than ``drain_timeout_s`` a process may take to exit."""
ENGINE_STUCK_FACTOR = 3.0
"""An engine whose loop has not beaten for this many ``engine_timeout_s`` is killed (the
frontends have answered 503 for it since ``engine_timeout_s``)."""
"""Pause before each successive restart of an engine that keeps failing (then the last)."""


def _run_frontend(config: uvicorn.Config, sock: socket.socket) -> None:
    """A frontend process (spawned: settings come from the environment)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    server = DrainingServer(config)
    server.run(sockets=[sock])
    raise SystemExit(server.exit_status)


@dataclass(eq=False)
class EngineSlot:
    """One engine: where it listens, its device (None: the settings' own), its process."""

    address: str
    device: int | None
    process: SpawnProcess | None = None
    failures: int = 0
    """Consecutive failed starts (for the restart pause)."""
    restart_at: float = 0.0
    started_at: float = 0.0
    heartbeat: Synchronized[float] | None = None
    """The ``time.monotonic()`` of the engine's last beat (0 until it serves)."""


@dataclass
class Supervisor:
    """``workers`` frontends sharing ``config``'s socket, and the ``engines`` (none: each
    frontend runs the models itself, as with ``engine=in-process``)."""

    config: uvicorn.Config
    workers: int
    engines: list[EngineSlot] = field(default_factory=list)
    engine_start_timeout_s: float = 600.0
    drain_timeout_s: float = 30.0
    engine_stuck_s: float = 6.0
    """An engine serving whose event loop has not beaten for this long is stuck (a deadlock, a
    call that never returns while holding the GIL): it is killed and restarted."""
    clean: bool = field(default=True, init=False)
    """After ``run``: every process exited 0 (drained, answering all it had accepted)."""

    def __post_init__(self) -> None:
        self._context: SpawnContext = multiprocessing.get_context("spawn")
        self._signals: list[int] = []

    @staticmethod
    def engine_slots(settings: Settings, run_dir: Path) -> list[EngineSlot]:
        """One engine per device of ``settings.devices`` (one on the default device if none),
        listening on an IPC socket in ``run_dir``."""
        devices: list[int | None] = list(settings.devices) or [None]
        return [
            EngineSlot(f"ipc://{run_dir / f'engine-{k}.sock'}", device)
            for k, device in enumerate(devices)
        ]

    # -- starting -------------------------------------------------------------------------------
    def _start_frontend(self, sock: socket.socket) -> SpawnProcess:
        process = self._context.Process(target=_run_frontend, args=(self.config, sock))
        process.start()
        return process

    def _start_engine(self, slot: EngineSlot, wake: socket.socket, wait: bool) -> bool:
        """Start ``slot``'s engine; with ``wait``, until it serves (False: it exited first)."""
        receive, send = self._context.Pipe(duplex=False)
        slot.heartbeat = self._context.Value("d", 0.0, lock=False)
        slot.started_at = time.monotonic()
        slot.process = self._context.Process(
            target=run_engine,
            args=(slot.address, slot.device, send, slot.heartbeat),
            name="engine",
        )
        slot.process.start()
        send.close()
        try:
            if not wait:
                return True
            deadline = time.monotonic() + self.engine_start_timeout_s
            while not self._signals and time.monotonic() < deadline:
                ready = multiprocessing.connection.wait(
                    [receive, slot.process.sentinel, wake], timeout=1.0
                )
                _drain(wake)
                if receive in ready:
                    with contextlib.suppress(EOFError):
                        log.info("engine %s serves (%s)", slot.address, receive.recv())
                        return True
                if slot.process.sentinel in ready:
                    return False
            return False
        finally:
            receive.close()

    # -- running --------------------------------------------------------------------------------
    def run(self) -> int:
        sock = self.config.bind_socket()
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        previous_wakeup = signal.set_wakeup_fd(wake_write.fileno())
        previous = {
            sig: signal.signal(sig, lambda s, _: self._signals.append(s)) for sig in HANDLED_SIGNALS
        }
        frontends: list[SpawnProcess] = []
        try:
            return self._supervise(sock, wake_read, frontends)
        finally:
            self._stop(frontends, wake_read)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_wakeup)
            for closing in (wake_read, wake_write, sock):
                closing.close()

    def _supervise(
        self, sock: socket.socket, wake: socket.socket, frontends: list[SpawnProcess]
    ) -> int:
        for slot in self.engines:
            if not self._start_engine(slot, wake, wait=True):
                if self._signals:
                    return 0
                log.error("engine %s failed to start; stopping", slot.address)
                return STARTUP_FAILURE
        for _ in range(self.workers):
            frontends.append(self._start_frontend(sock))
        first = {p.pid for p in frontends}
        log.info(
            "started %d frontends and %d engines",
            len(frontends),
            len(self.engines),
            extra={
                "frontends": [p.pid for p in frontends],
                "engines": [s.process.pid for s in self.engines if s.process],
            },
        )
        while not self._signals:
            self._wait([p.sentinel for p in self._processes(frontends)], wake, self._next_restart())
            for index, frontend in enumerate(frontends):
                if self._signals or frontend.is_alive():
                    continue
                frontend.join()
                _forget(frontend)
                if frontend.exitcode == STARTUP_FAILURE and frontend.pid in first:
                    # One of the first frontends: the next would fail alike (a configuration
                    # error). A replacement may only have met an engine that was restarting.
                    log.error("frontend %d failed to start; stopping", frontend.pid)
                    return STARTUP_FAILURE
                log.error(
                    "frontend %d died (exit code %s); starting another",
                    frontend.pid,
                    frontend.exitcode,
                )
                frontends[index] = self._start_frontend(sock)
            for slot in self.engines:
                if not self._signals:
                    self._tend_engine(slot, wake)
        return 0

    def _tend_engine(self, slot: EngineSlot, wake: socket.socket) -> None:
        """Restart ``slot``'s engine if it has exited (after its pause, if it keeps failing)."""
        process = slot.process
        if process is not None:
            if process.is_alive():
                self._kill_if_stuck(slot, process)
                return
            process.join()
            _forget(process)
            slot.process = None
            # A start that failed, or a crash soon after one, grows the pause: a crash loop
            # must not spin.
            short_lived = time.monotonic() - slot.started_at < CRASH_LOOP_S
            failed = process.exitcode == STARTUP_FAILURE or short_lived
            slot.failures = slot.failures + 1 if failed else 0
            pause = RESTART_PAUSE_S[min(slot.failures, len(RESTART_PAUSE_S) - 1)]
            slot.restart_at = time.monotonic() + pause
            log.error(
                "engine %s (pid %d) exited with status %s; restarting it in %g s",
                slot.address,
                process.pid,
                process.exitcode,
                pause,
            )
        if time.monotonic() >= slot.restart_at:
            self._start_engine(slot, wake, wait=False)

    def _kill_if_stuck(self, slot: EngineSlot, process: SpawnProcess) -> None:
        """Kill an engine whose loop stopped beating, or that has not served within
        ``engine_start_timeout_s`` of its start; its sentinel wakes the loop, which restarts
        it."""
        now = time.monotonic()
        last = slot.heartbeat.value if slot.heartbeat is not None else 0.0
        if last and now - last > self.engine_stuck_s:
            why = f"stopped beating {now - last:.1f} s ago: stuck"
        elif not last and now - slot.started_at > self.engine_start_timeout_s:
            why = f"has not served {now - slot.started_at:.0f} s after its start"
        else:
            return
        log.error("engine %s (pid %s) %s; killing it", slot.address, process.pid, why)
        process.kill()

    def _next_restart(self) -> float:
        waiting = [s.restart_at for s in self.engines if s.process is None]
        return max(0.0, min(waiting) - time.monotonic()) if waiting else 1.0

    def _processes(self, frontends: list[SpawnProcess]) -> list[SpawnProcess]:
        return frontends + [s.process for s in self.engines if s.process is not None]

    def _wait(self, sentinels: list[int], wake: socket.socket, timeout: float = 1.0) -> None:
        """Until a process exits or a signal arrives (its handler wrote to ``wake``); at most
        ``timeout``, so that the caller looks again whatever happened."""
        multiprocessing.connection.wait([*sentinels, wake], timeout=min(timeout, 1.0))
        _drain(wake)

    # -- stopping -------------------------------------------------------------------------------
    def _stop(self, frontends: list[SpawnProcess], wake: socket.socket) -> None:
        """Drain the frontends, then the engines; log how each ended."""
        if self._signals:
            log.info("received signal %d: stopping", self._signals[0])
        self._stop_group(frontends, wake, hurry=True)
        engines = [s.process for s in self.engines if s.process is not None]
        self._stop_group(engines, wake, hurry=False)
        codes = [p.exitcode for p in frontends + engines]
        # -SIGTERM: the process was stopped before it could handle signals, i.e. while it was
        # still starting (a replacement), before it had accepted anything: nothing was lost.
        self.clean = all(code in (0, -signal.SIGTERM) for code in codes)
        log.log(
            logging.INFO if self.clean else logging.ERROR,
            "stopped",
            extra={
                "frontend_exit_codes": [p.exitcode for p in frontends],
                "engine_exit_codes": [p.exitcode for p in engines],
            },
        )

    def _stop_group(self, processes: list[SpawnProcess], wake: socket.socket, hurry: bool) -> None:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: it drains
        passed_on = len(self._signals)
        # A process still there well past its drain (a thread stuck in ORT that interpreter
        # shut-down would wait for) is killed: a stop must end.
        kill_at = time.monotonic() + self.drain_timeout_s + STOP_GRACE_S
        while alive := [p for p in processes if p.is_alive()]:
            if time.monotonic() > kill_at:
                for process in alive:
                    log.error("pid %s did not stop %g s after SIGTERM; killing it", process.pid,
                              self.drain_timeout_s + STOP_GRACE_S)  # fmt: skip
                    process.kill()
                kill_at = float("inf")
            if hurry and len(self._signals) > max(passed_on, 1):  # a second Ctrl-C or SIGTERM
                for process in alive:
                    if process.pid is not None:
                        with contextlib.suppress(ProcessLookupError):
                            # uvicorn exits at once on a SIGINT after the first signal.
                            os.kill(process.pid, signal.SIGINT)
                passed_on = len(self._signals)
            self._wait([p.sentinel for p in alive], wake)
        for process in processes:
            process.join()
            _forget(process)


def run_supervised(config: uvicorn.Config, settings: Settings, run_dir: Path) -> int:
    """Run the frontends (and engines) of ``settings``; the exit status."""
    engines = Supervisor.engine_slots(settings, run_dir) if settings.separate_engine else []
    if engines:  # the frontends (spawned, settings from the environment) connect to them
        os.environ["LSTM_SERVING_ENGINE_ADDRESSES"] = json.dumps([e.address for e in engines])
    supervisor = Supervisor(
        config,
        settings.workers,
        engines,
        settings.engine_start_timeout_s,
        drain_timeout_s=settings.drain_timeout_s,
        engine_stuck_s=ENGINE_STUCK_FACTOR * settings.engine_timeout_s,
    )
    status = supervisor.run()
    if status:
        return status
    return 0 if supervisor.clean else NOT_ALL_ANSWERED


def _forget(process: SpawnProcess) -> None:
    if process.pid is not None:
        forget_process(process.pid)


def _drain(wake: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError):
        while wake.recv(64):
            pass
