"""``--workers N``: N server processes sharing one listening socket, under ``WorkerPool``."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
from multiprocessing.context import SpawnContext, SpawnProcess

import uvicorn
from uvicorn.server import HANDLED_SIGNALS

from service.logs import configure_logging
from service.metrics import forget_process
from service.server import NOT_ALL_ANSWERED, STARTUP_FAILURE, DrainingServer
from service.settings import Settings

log = logging.getLogger("service")


def _run_worker(config: uvicorn.Config, sock: socket.socket) -> None:
    """A worker process of ``WorkerPool`` (spawned: settings come from the environment)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    server = DrainingServer(config)
    server.run(sockets=[sock])
    raise SystemExit(server.exit_status)


class WorkerPool:
    """``workers`` server processes sharing one listening socket (uvicorn's supervisor does not
    say how its workers' drains went, nor tell the metrics when a worker dies):

    * a worker that dies (a crash, ``kill -9``, the OOM killer) is replaced, and its live gauges
      are forgotten first, or /metrics would go on summing its last queue depth;
    * a worker that fails to start stops the pool (the next would fail alike): status 3;
    * SIGTERM or SIGINT: each worker gets SIGTERM and drains; the pool exits 0 only if every
      worker did (answered every request it had accepted). A second signal stops the
      workers at once (as a SIGINT, on which uvicorn stops waiting for requests).
    """

    def __init__(self, config: uvicorn.Config, workers: int) -> None:
        self.config = config
        self.size = workers
        self._context: SpawnContext = multiprocessing.get_context("spawn")

    def _start(self, sock: socket.socket) -> SpawnProcess:
        worker = self._context.Process(target=_run_worker, args=(self.config, sock))
        worker.start()
        return worker

    def run(self) -> int:
        sock = self.config.bind_socket()
        signals: list[int] = []
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        previous_wakeup = signal.set_wakeup_fd(wake_write.fileno())
        previous = {
            sig: signal.signal(sig, lambda s, _: signals.append(s)) for sig in HANDLED_SIGNALS
        }
        workers: list[SpawnProcess] = []
        try:
            try:
                for _ in range(self.size):
                    workers.append(self._start(sock))
            except BaseException:  # a start failed (spawn error, EMFILE): stop those started
                self._stop(workers, wake_read, signals)
                raise
            log.info("started %d workers", self.size, extra={"pids": [w.pid for w in workers]})
            while not signals:
                self._wait(workers, wake_read)
                for index, worker in enumerate(workers):
                    if signals or worker.is_alive():
                        continue
                    worker.join()
                    assert worker.pid is not None
                    forget_process(worker.pid)
                    if worker.exitcode == STARTUP_FAILURE:
                        log.error("worker %d failed to start; stopping", worker.pid)
                        self._stop(workers, wake_read, signals)
                        return STARTUP_FAILURE
                    log.error(
                        "worker %d died (exit code %s); starting another",
                        worker.pid,
                        worker.exitcode,
                    )
                    workers[index] = self._start(sock)
            log.info("received signal %d: stopping %d workers", signals[0], len(workers))
            self._stop(workers, wake_read, signals)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_wakeup)
            for closing in (wake_read, wake_write, sock):
                closing.close()
        codes = [w.exitcode for w in workers]
        clean = all(code == 0 for code in codes)
        log.log(
            logging.INFO if clean else logging.ERROR,
            "workers stopped",
            extra={"exit_codes": codes},
        )
        return 0 if clean else NOT_ALL_ANSWERED

    @staticmethod
    def _wait(workers: list[SpawnProcess], wake: socket.socket) -> None:
        """Until a worker exits or a signal arrives (its handler wrote to ``wake``); at most a
        second, so that the caller looks again whatever happened."""
        multiprocessing.connection.wait([w.sentinel for w in workers] + [wake], timeout=1.0)
        with contextlib.suppress(BlockingIOError):
            while wake.recv(64):
                pass

    def _stop(self, workers: list[SpawnProcess], wake: socket.socket, signals: list[int]) -> None:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()  # SIGTERM: it drains
        passed_on = 1
        while alive := [w for w in workers if w.is_alive()]:
            for _ in signals[passed_on:]:  # a second Ctrl-C or SIGTERM: stop them now
                for worker in alive:
                    if worker.pid is not None:
                        with contextlib.suppress(ProcessLookupError):
                            # uvicorn exits at once on a SIGINT after the first signal; a
                            # second SIGTERM would change nothing.
                            os.kill(worker.pid, signal.SIGINT)
            passed_on = len(signals)
            self._wait(alive, wake)
        for worker in workers:
            worker.join()
            if worker.pid is not None:
                forget_process(worker.pid)
