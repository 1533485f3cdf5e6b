"""Clients over an in-process transport (``httpx.MockTransport``) whose retries wait for nothing, recording the
waits: for tests of what the clients do with the answers they get."""

from __future__ import annotations

import httpx

from recsys.client import AsyncClient, Client, Retry


class MockServer:
    """Subclasses answer in :meth:`handle`; :attr:`waits` holds the retry waits the clients asked for."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        raise NotImplementedError

    def client(self) -> Client:
        return Client(http=httpx.Client(transport=httpx.MockTransport(self.handle), base_url="http://x"),
                      retry=Retry(sleep=self.waits.append))

    def async_client(self) -> AsyncClient:
        async def asleep(s: float) -> None:
            self.waits.append(s)

        return AsyncClient(http=httpx.AsyncClient(transport=httpx.MockTransport(self.handle), base_url="http://x"),
                           retry=Retry(asleep=asleep))
