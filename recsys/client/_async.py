"""The asynchronous client (on ``httpx.AsyncClient``): the same methods as :class:`~recsys.client.Client`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from recsys.client import _base as api
from recsys.client._base import Call, EventResult, FilterLike, Page, Retry

T = TypeVar("T")


class AsyncClient:
    """Asynchronous client; one coroutine per endpoint. Use as an async context manager or await :meth:`aclose`.

    429 and 503 answers that waiting can heal are retried after the server's Retry-After (``retry``: a :class:`Retry`;
    ``Retry(attempts=1)`` turns it off). No answer at all raises :class:`~recsys.client.Unreachable`."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, *,
                 timeout: float = 30.0, http: httpx.AsyncClient | None = None, retry: Retry | None = None) -> None:
        self._own = http is None
        self._http = http if http is not None else httpx.AsyncClient(base_url=base_url, timeout=timeout)
        self._headers = {"X-API-Key": api_key} if api_key else {}
        self.retry = retry or Retry()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own:
            await self._http.aclose()

    async def _call(self, call: Call[T]) -> T:
        waited, attempt = 0.0, 1
        while True:
            with api.reaching(call.method, call.url, self._http.base_url):
                r = await self._http.request(call.method, call.url, headers=self._headers, **call.kwargs)
            wait = self.retry.delay(r, attempt, waited) if call.retry else None
            if wait is None:
                return call.result(r)
            await r.aclose()
            await self.retry.asleep(wait)
            waited += wait
            attempt += 1

    # -- operations ---------------------------------------------------------------------------------------------
    async def health(self) -> bool:
        return await self._call(api.health())

    async def ready(self) -> dict[str, Any]:
        """The readiness body (``ready`` is False while the store is down or no index is loaded)."""
        return await self._call(api.ready())

    async def status(self) -> dict[str, Any]:
        return await self._call(api.get("/v1/status"))  # type: ignore[no-any-return]

    async def metrics(self) -> str:
        return await self._call(api.metrics())

    async def feedback_report(self, since: str | None = None) -> dict[str, Any]:
        """Lists served and the events attributed to them (admin key): ``GET /v1/feedback/report``."""
        return await self._call(api.feedback_report(since))

    # -- items --------------------------------------------------------------------------------------------------
    async def get_item(self, item_id: str) -> dict[str, Any]:
        return await self._call(api.get_item(item_id))

    async def put_item(self, item_id: str, item: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call(api.put_item(item_id, item))

    async def upsert_items(self, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return await self._call(api.upsert_items(items))

    async def delete_item(self, item_id: str) -> None:
        await self._call(api.delete_item(item_id))

    # -- events -------------------------------------------------------------------------------------------------
    async def send_events(self, events: Iterable[Mapping[str, Any]]) -> list[EventResult]:
        """Events (user_id, item_id, type, value?, timestamp?, event_id?); committed when this returns. Send
        ``event_id`` s: a retried batch is then stored once."""
        return await self._call(api.send_events(events))

    # -- queries ------------------------------------------------------------------------------------------------
    async def recommend(self, user_id: str, k: int = 20, *, filter: FilterLike = None, exclude: Sequence[str] = (),
                  diversity: float | None = None, explain: bool = False, debug: bool = False,
                  cursor: str | None = None, exclude_shown_hours: float | None = None,
                  boosts: Mapping[str, float] | None = None, bury: Sequence[str] = (),
                  pins: Mapping[str, int] | None = None, exploration: float | None = None) -> Page:
        """A user's recommendations; ``cursor=page.next`` for the feed's next page (no item of earlier pages),
        ``exclude_shown_hours`` to leave out what the user was shown lately; ``boosts``, ``bury``, ``pins``
        ({item_id: position}) and ``exploration`` (a share) are business rules after ranking."""
        rules = {"boosts": dict(boosts or {}), "bury": list(bury), "pins": dict(pins or {}),
                 "exploration": exploration}
        return await self._call(api.recommend(user_id, k, filter, exclude, diversity, explain, debug, cursor,
                                              exclude_shown_hours, rules))

    async def recommend_session(self, events: Sequence[Mapping[str, Any]], k: int = 20, *, filter: FilterLike = None,
                          exclude: Sequence[str] = (), diversity: float | None = None,
                          explain: bool = False) -> Page:
        return await self._call(api.recommend_session(events, k, filter, exclude, diversity, explain))

    async def similar(self, item_id: str, k: int = 20, *, modality: str | None = None,
                      filter: FilterLike = None, exclude: Sequence[str] = (), user_id: str | None = None) -> Page:
        return await self._call(api.similar(item_id, k, modality, filter, exclude, user_id))

    async def search_text(self, query: str, k: int = 20, *, modality: str | None = None,
                          filter: FilterLike = None, exclude: Sequence[str] = (), user_id: str | None = None) -> Page:
        return await self._call(api.search_text(query, k, modality, filter, exclude, user_id))

    async def search_image(self, image: bytes | str | Path, k: int = 20, *, modality: str | None = None,
                           filter: FilterLike = None, user_id: str | None = None) -> Page:
        return await self._call(api.search_image(image, k, modality, filter, user_id))

    async def more_like_these(self, positive: Mapping[str, float] | Sequence[str],
                        negative: Mapping[str, float] | Sequence[str] = (), k: int = 20, *,
                        filter: FilterLike = None, exclude: Sequence[str] = ()) -> Page:
        return await self._call(api.more_like_these(positive, negative, k, filter, exclude))

    async def trending(self, k: int = 20, *, filter: FilterLike = None) -> Page:
        return await self._call(api.trending(k, filter))
