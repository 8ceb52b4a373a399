"""The exit statuses of every process of the service (``python -m service``, a frontend, an
engine), so that a supervisor, a shell or an orchestrator can tell how it ended."""

DRAINED = 0
"""Stopped on SIGTERM with every accepted request answered."""
NOT_ALL_ANSWERED = 1
"""Some accepted requests were cut off at ``drain_timeout_s``, or a process did not stop
cleanly."""
NO_REPOSITORY = 2
"""The model repository does not exist."""
STARTUP_FAILURE = 3
"""Start-up failed: no model can serve, the port or address is taken (uvicorn's own status
for a server that could not start)."""
ENGINE_FAILED = 4
"""An engine failed while serving: a batcher died, or a batch outlived ``max_batch_run_s`` (a
thread cannot be stopped, so the process ends and its supervisor starts another)."""
