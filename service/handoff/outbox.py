"""Messages bound for one peer, sent together once per event-loop iteration.

Requests arrive (and batches finish) in bursts: the many messages one iteration of the event
loop produces for a peer leave as one ZeroMQ message, which costs about what one request alone
would (``service.handoff.frames``). Nothing waits for a fuller message: the flush is the next
thing the loop does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from service.handoff.messages import Message


class Outbox:
    """Collects messages for ``send(messages)``, called once per loop iteration with them."""

    def __init__(self, send: Callable[[list[Message]], None]) -> None:
        self._send = send
        self._messages: list[Message] = []

    def put(self, message: Message) -> None:
        if not self._messages:
            asyncio.get_running_loop().call_soon(self.flush)
        self._messages.append(message)

    def flush(self) -> None:
        """Send what is queued now (nothing when nothing is)."""
        messages, self._messages = self._messages, []
        if messages:
            self._send(messages)
