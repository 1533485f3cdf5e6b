"""uvicorn's HTTP protocol with a deadline on each request's headers.

uvicorn times out idle keep-alive connections but not a request whose headers arrive slowly: a client sending one
header byte at a time (slowloris) holds its connection, and a few thousand of them hold every file descriptor.
Here a connection waiting for a request's headers (a new connection, or the next request on a kept-alive one)
gets ``api.header_timeout_s`` to complete them, then a 408 and the connection closed. A request whose headers
arrived is not limited: its body and its handling have their own limits.

``recsys serve`` passes this class to uvicorn (``http="recsys.api.protocol:HeaderTimeoutProtocol"``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

log = logging.getLogger(__name__)

_REPLY = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"


class HeaderTimeoutProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    header_timeout_s: float | None = None
    """Seconds; None reads ``api.header_timeout_s`` from the settings (a worker process: from the environment)."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request on this connection gets its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        timeout = _timeout(type(self))
        if timeout > 0:
            # The request cycle is made when a request's headers are complete: unchanged at the deadline means
            # the headers never came.
            self._header_timer = self.loop.call_later(timeout, self._expired, self.cycle)

    def _disarm(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _expired(self, cycle_then: Any) -> None:
        self._header_timer = None
        if self.cycle is not cycle_then or self.transport.is_closing():
            return
        log.debug("closing a connection whose request headers did not arrive in time")
        self.transport.write(_REPLY)
        self.transport.close()


def _timeout(cls: type[HeaderTimeoutProtocol]) -> float:
    if cls.header_timeout_s is None:
        from recsys.config import get_settings

        cls.header_timeout_s = float(get_settings().api.header_timeout_s)
    return cls.header_timeout_s
