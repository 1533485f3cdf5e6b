"""The asynchronous client (on ``httpx.AsyncClient``): the same methods as :class:`~recsys.client.Client`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from recsys.client import _calls as api
from recsys.client._base import Call, EventResult, Page, Retry, Unreachable
from recsys.client._calls import Batch, Examples, FilterLike, Ids, SearchMode, When
from recsys.client._checks import (
    DEFAULT_TIMEOUT,
    check_given,
    checked_url,
    closed,
    invalid_url,
    key_headers,
    not_sendable,
    unreachable,
)
from recsys.errors import RecsysError

T = TypeVar("T")
R = TypeVar("R")


def _replacement(pool: httpx.AsyncClient) -> httpx.AsyncClient:
    """A new pool with ``pool``'s address and timeout."""
    return httpx.AsyncClient(base_url=pool.base_url, timeout=pool.timeout)


class AsyncClient:
    """Asynchronous client; one coroutine per endpoint. Use as an async context manager or await :meth:`aclose`.

    429 and 503 answers that waiting can heal, and refused connections, are retried (``retry``: a :class:`Retry`;
    ``Retry(attempts=1)`` turns it off). No answer at all raises :class:`~recsys.client.Unreachable`. Item id
    lists (``exclude``, ``bury``, the examples of :meth:`more_like_these`) take a single str as one id.

    ``base_url`` defaults to http://127.0.0.1:8000 and ``timeout`` to 30 s. With ``http=`` (your own
    ``httpx.AsyncClient``), ``base_url`` fills in one it lacks and must match one it has, and ``timeout`` is refused
    (set it on your client). A call after :meth:`aclose` raises :class:`ClientClosed`, and so does a call in
    flight when it is closed.

    ``base_url`` must be ``http(s)://HOST[:PORT]``, with a path prefix where a proxy serves the API under one, but
    not ending in /v1 (the client adds it): anything else is refused here (ValueError). ``api_key`` is stripped of
    surrounding whitespace (a key read from a file); one with a character no HTTP header can carry is refused here,
    and no message shows the key.

    Event loops: pooled connections belong to the loop that opened them. Used from another loop (one
    ``asyncio.run`` per job with a module-level client), a client that made its own pool lets go of it and opens a
    new one for the new loop: an ended loop's connections cannot be closed from another loop (asyncio closes a
    transport through its own), so the garbage collector closes them. Use one loop at a time; for connections
    closed at once, make the client inside the loop (``async with AsyncClient(...) as c``). A client given ``http=``
    uses that client as it is: make one per loop."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: float | None = None, http: httpx.AsyncClient | None = None,
                 retry: Retry | None = None) -> None:
        if http is not None:
            check_given(http, base_url, timeout)
        self._own = http is None
        self._http = http if http is not None else httpx.AsyncClient(
            base_url=checked_url(base_url), timeout=DEFAULT_TIMEOUT if timeout is None else timeout)
        self._headers = key_headers(api_key)
        self.retry = retry or Retry()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> AsyncClient:
        if self._closed:
            raise closed("AsyncClient")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        if not self._own:
            return
        if self._loop in (None, asyncio.get_running_loop()):
            await self._http.aclose()
            return
        # A pool of an ended loop cannot be closed from this one (asyncio closes a transport through its own loop):
        # let go of it, so that the garbage collector closes its connections.
        self._http = _replacement(self._http)
        await self._http.aclose()

    def _pool(self) -> httpx.AsyncClient:
        """The httpx client for the running loop: an own pool opened on another loop is replaced (and let go of:
        see :meth:`aclose`)."""
        if self._closed or self._http.is_closed:
            raise closed("AsyncClient")
        loop = asyncio.get_running_loop()
        if self._own and self._loop is not None and self._loop is not loop:
            self._http = _replacement(self._http)
        self._loop = loop
        return self._http


    async def _call(self, call: Call[T]) -> T:
        http = self._pool()
        waited, attempt = 0.0, 1
        while True:
            try:
                r = await http.request(call.method, call.url, headers=self._headers, follow_redirects=False,
                                       **call.kwargs)
            except httpx.InvalidURL as e:
                raise invalid_url(call, e) from e
            except httpx.LocalProtocolError:
                raise not_sendable(call) from None  # httpx's text quotes the headers, the API key among them
            except (httpx.TransportError, RuntimeError) as e:
                # aclose() from another task: the in-flight request drops, and a retry meets httpx's RuntimeError
                if self._closed or http.is_closed:
                    raise closed("AsyncClient") from e
                if not isinstance(e, httpx.TransportError):
                    raise
                wait = self.retry.delay_after(e, attempt, waited, idempotent=call.idempotent) if call.retry \
                    else None
                if wait is None:
                    raise unreachable(call, http.base_url, e, attempt) from e
            else:
                wait = self.retry.delay(r, attempt, waited, idempotent=call.idempotent) if call.retry else None
                if wait is None:
                    return call.result(r)
                await r.aclose()
            await self.retry.asleep(wait)
            waited += wait
            attempt += 1

    async def _batch(self, batch: Batch[R]) -> list[R]:
        parts: list[list[R]] = []
        for call in batch.calls:
            try:
                parts.append(await self._call(call))
            except RecsysError as e:
                if parts:
                    e.add_note(batch.note(len(parts)))
                raise
        return batch.merge(parts)

    # -- operations ---------------------------------------------------------------------------------------------
    async def health(self) -> bool:
        """Whether the server answers 200 now (a probe: never retried); False when it does not answer at all."""
        try:
            return await self._call(api.health())
        except Unreachable:
            return False

    async def ready(self) -> dict[str, Any]:
        """The readiness body (``ready`` is False while the store is down or no index is loaded)."""
        return await self._call(api.ready())

    async def status(self) -> dict[str, Any]:
        return await self._call(api.get("/v1/status"))  # type: ignore[no-any-return]

    async def metrics(self) -> str:
        return await self._call(api.metrics())

    async def feedback_report(self, since: When = None) -> dict[str, Any]:
        """Lists served and the events attributed to them (admin key): ``GET /v1/feedback/report``."""
        return await self._call(api.feedback_report(since))

    async def experiments(self) -> list[dict[str, Any]]:
        """The configured experiments, their variants and shares (admin key)."""
        return await self._call(api.experiments())

    async def experiment(self, name: str) -> dict[str, Any]:
        return await self._call(api.experiment(name))

    async def experiment_report(self, name: str, since: When = None) -> dict[str, Any]:
        """Per variant: users, impressions, clicks, conversions and the difference to the control (admin key)."""
        return await self._call(api.experiment_report(name, since))

    # -- items, users and events --------------------------------------------------------------------------------
    async def get_item(self, item_id: str) -> dict[str, Any]:
        return await self._call(api.get_item(item_id))

    async def put_item(self, item_id: str, item: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call(api.put_item(item_id, item))

    async def upsert_items(self, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Create or update items; a result per item (``index``: its position in ``items``, ``status``: stored or
        error). The API takes at most 1,000 a call: a longer batch is sent in calls of at most 1,000 records and
        8,000,000 bytes. A record that cannot be sent (NaN, infinity, over 8,000,000 bytes alone) is answered
        ``error`` naming the field, and the others are sent."""
        return await self._batch(api.upsert_items(items))

    async def delete_item(self, item_id: str) -> None:
        await self._call(api.delete_item(item_id))

    async def delete_user(self, user_id: str) -> int:
        """Delete a user, their events and the lists served to them (admin key); returns how many events went."""
        return await self._call(api.delete_user(user_id))

    async def send_events(self, events: Iterable[Mapping[str, Any]]) -> list[EventResult]:
        """Events (user_id, item_id, type, value?, timestamp?, event_id?); committed when this returns. Send
        ``event_id`` s: a retried batch is then stored once. A result per event, ``index`` its position in
        ``events``. The API takes at most 1,000 a call: a longer batch is sent in calls of at most 1,000 (and
        8,000,000 bytes). numpy numbers are sent as numbers; an event with NaN or infinity is answered ``error``
        naming the field, and the others are sent."""
        return await self._batch(api.send_events(events))

    # -- queries ------------------------------------------------------------------------------------------------
    async def recommend(self, user_id: str, k: int = 20, *, filter: FilterLike = None, exclude: Ids = (),
                        diversity: float | None = None, explain: bool = False, debug: bool = False,
                        cursor: str | None = None, exclude_shown_hours: float | None = None,
                        boosts: Mapping[str, float] | None = None, bury: Ids = (),
                        pins: Mapping[str, int] | None = None, exploration: float | None = None,
                        now: When = None) -> Page:
        """A user's recommendations; ``cursor=page.next`` for the feed's next page (no item of earlier pages),
        ``exclude_shown_hours`` to leave out what the user was shown lately; ``boosts``, ``bury``, ``pins``
        ({item_id: position}) and ``exploration`` (a share) are business rules after ranking; ``now`` ranks as of
        that time (only the user's events before it count)."""
        return await self._call(api.recommend(user_id, k, filter, exclude, diversity, explain, debug, cursor,
                                              exclude_shown_hours, now, api.rules(boosts, bury, pins, exploration)))

    async def buy_again(self, user_id: str, k: int = 20, *, now: When = None) -> Page:
        """The user's own items most likely wanted again (kept apart from the personal list)."""
        return await self._call(api.buy_again(user_id, k, now))

    async def recommend_session(self, events: Sequence[Mapping[str, Any]], k: int = 20, *, filter: FilterLike = None,
                                exclude: Ids = (), diversity: float | None = None, explain: bool = False,
                                cursor: str | None = None, boosts: Mapping[str, float] | None = None, bury: Ids = (),
                                pins: Mapping[str, int] | None = None, exploration: float | None = None,
                                debug: bool = False) -> Page:
        """Recommendations from posted events (nothing is stored); ``cursor=page.next`` and the business rules as
        in :meth:`recommend`; ``debug``: ``page.debug`` holds the server's time for the list (ms)."""
        return await self._call(api.recommend_session(events, k, filter, exclude, diversity, explain, cursor,
                                                      api.rules(boosts, bury, pins, exploration), debug))

    async def similar(self, item_id: str, k: int = 20, *, modality: str | None = None, filter: FilterLike = None,
                      exclude: Ids = (), user_id: str | None = None) -> Page:
        """Items like ``item_id``; ``user_id`` (optional, also on the searches) records who saw the list and assigns
        their experiment variant, whose modality applies unless one is given."""
        return await self._call(api.similar(item_id, k, modality, filter, exclude, user_id))

    async def search_text(self, query: str, k: int = 20, *, modality: str | None = None, filter: FilterLike = None,
                          exclude: Ids = (), user_id: str | None = None, mode: SearchMode | None = None,
                          lexical_weight: float | None = None) -> Page:
        """``mode``: hybrid (keywords and vectors fused), vector or lexical; ``lexical_weight``: the keywords'
        share of a hybrid fusion. The server's defaults apply when None."""
        return await self._call(api.search_text(query, k, modality, filter, exclude, user_id, mode, lexical_weight))

    async def search_image(self, image: bytes | str | Path, k: int = 20, *, modality: str | None = None,
                           filter: FilterLike = None, user_id: str | None = None) -> Page:
        return await self._call(api.search_image(image, k, modality, filter, user_id))

    async def more_like_these(self, positive: Examples, negative: Examples = (), k: int = 20, *,
                              filter: FilterLike = None, exclude: Ids = ()) -> Page:
        """Examples: {item_id: weight}, or ids (weight 1)."""
        return await self._call(api.more_like_these(positive, negative, k, filter, exclude))

    async def trending(self, k: int = 20, *, filter: FilterLike = None) -> Page:
        return await self._call(api.trending(k, filter))
