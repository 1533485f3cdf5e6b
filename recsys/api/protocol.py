"""uvicorn's HTTP protocol with a deadline on each request's headers.

uvicorn times out idle keep-alive connections but not a request whose headers arrive slowly: a client sending one
header byte at a time (slowloris) holds its connection, and a few thousand of them hold every file descriptor.
Here a connection waiting for a request's headers (a new connection, or the next request on a kept-alive one)
gets ``api.header_timeout_s`` to complete them, then a 408 and the connection closed. Its body then has to keep
coming: at least :data:`MIN_BODY_RATE` bytes a second over each such window until it is complete (a client that sent
its headers and then trickles a declared 100 kB body held its connection for as long as it liked, with no key).
Handling a complete request is not limited here: it has its own bounds.

``recsys serve`` passes this class to uvicorn (``http="recsys.api.protocol:HeaderTimeoutProtocol"``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

log = logging.getLogger(__name__)

_REPLY = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
MIN_BODY_RATE = 1024
"""Bytes a second a request body must arrive at, on average over each ``header_timeout_s`` window (a slow mobile
link sends far more)."""


class HeaderTimeoutProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    header_timeout_s: float | None = None
    """Seconds; None reads ``api.header_timeout_s`` from the settings (a worker process: from the environment)."""

    def connection_made(self, transport: Any) -> None:
        self._received = 0
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        self._received += len(data)
        super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request on this connection gets its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, body: bool = False) -> None:
        self._disarm()
        timeout = _timeout(type(self))
        if timeout > 0:
            # The request cycle is made when a request's headers are complete: unchanged at the deadline means
            # the headers never came (``body``: a window of the body's, armed once they had).
            self._header_timer = self.loop.call_later(timeout, self._expired, self.cycle, self._received, body)

    def _disarm(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _expired(self, cycle_then: Any, received_then: int, body: bool) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if body or self.cycle is not cycle_then:  # the headers came: the body, if any is still due, must keep coming
            if not getattr(self.cycle, "more_body", False) or getattr(self.flow, "read_paused", False):
                return  # complete (being handled), or the server paused reading: not the client's doing
            if self._received - received_then >= MIN_BODY_RATE * _timeout(type(self)):
                self._arm(body=True)
                return
            log.debug("closing a connection whose request body does not arrive")
        else:
            log.debug("closing a connection whose request headers did not arrive in time")
        self.transport.write(_REPLY)
        self.transport.close()


def _timeout(cls: type[HeaderTimeoutProtocol]) -> float:
    if cls.header_timeout_s is None:
        from recsys.config import get_settings

        cls.header_timeout_s = float(get_settings().api.header_timeout_s)
    return cls.header_timeout_s
