"""The synchronous client."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from recsys.client import _base as api
from recsys.client._base import Call, EventResult, FilterLike, Page, Retry

T = TypeVar("T")


class Client:
    """Synchronous client; one method per endpoint. Use as a context manager or call :meth:`close`.

    429 and 503 answers that waiting can heal are retried after the server's Retry-After (``retry``: a :class:`Retry`;
    ``Retry(attempts=1)`` turns it off). No answer at all raises :class:`~recsys.client.Unreachable`."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, *,
                 timeout: float = 30.0, http: httpx.Client | None = None, retry: Retry | None = None) -> None:
        self._own = http is None
        self._http = http if http is not None else httpx.Client(base_url=base_url, timeout=timeout)
        self._headers = {"X-API-Key": api_key} if api_key else {}
        self.retry = retry or Retry()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self._http.close()

    def _call(self, call: Call[T]) -> T:
        waited, attempt = 0.0, 1
        while True:
            with api.reaching(call.method, call.url, self._http.base_url):
                r = self._http.request(call.method, call.url, headers=self._headers, **call.kwargs)
            wait = self.retry.delay(r, attempt, waited) if call.retry else None
            if wait is None:
                return call.result(r)
            r.close()
            self.retry.sleep(wait)
            waited += wait
            attempt += 1

    # -- operations ---------------------------------------------------------------------------------------------
    def health(self) -> bool:
        return self._call(api.health())

    def ready(self) -> dict[str, Any]:
        """The readiness body (``ready`` is False while the store is down or no index is loaded)."""
        return self._call(api.ready())

    def status(self) -> dict[str, Any]:
        return self._call(api.get("/v1/status"))  # type: ignore[no-any-return]

    def metrics(self) -> str:
        return self._call(api.metrics())

    def feedback_report(self, since: str | None = None) -> dict[str, Any]:
        """Lists served and the events attributed to them (admin key): ``GET /v1/feedback/report``."""
        return self._call(api.feedback_report(since))

    # -- items --------------------------------------------------------------------------------------------------
    def get_item(self, item_id: str) -> dict[str, Any]:
        return self._call(api.get_item(item_id))

    def put_item(self, item_id: str, item: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(api.put_item(item_id, item))

    def upsert_items(self, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return self._call(api.upsert_items(items))

    def delete_item(self, item_id: str) -> None:
        self._call(api.delete_item(item_id))

    # -- events -------------------------------------------------------------------------------------------------
    def send_events(self, events: Iterable[Mapping[str, Any]]) -> list[EventResult]:
        """Events (user_id, item_id, type, value?, timestamp?, event_id?); committed when this returns. Send
        ``event_id`` s: a retried batch is then stored once."""
        return self._call(api.send_events(events))

    # -- queries ------------------------------------------------------------------------------------------------
    def recommend(self, user_id: str, k: int = 20, *, filter: FilterLike = None, exclude: Sequence[str] = (),
                  diversity: float | None = None, explain: bool = False, debug: bool = False,
                  cursor: str | None = None, exclude_shown_hours: float | None = None,
                  boosts: Mapping[str, float] | None = None, bury: Sequence[str] = (),
                  pins: Mapping[str, int] | None = None, exploration: float | None = None) -> Page:
        """A user's recommendations; ``cursor=page.next`` for the feed's next page (no item of earlier pages),
        ``exclude_shown_hours`` to leave out what the user was shown lately; ``boosts``, ``bury``, ``pins``
        ({item_id: position}) and ``exploration`` (a share) are business rules after ranking."""
        rules = {"boosts": dict(boosts or {}), "bury": list(bury), "pins": dict(pins or {}),
                 "exploration": exploration}
        return self._call(api.recommend(user_id, k, filter, exclude, diversity, explain, debug, cursor,
                                        exclude_shown_hours, rules))

    def recommend_session(self, events: Sequence[Mapping[str, Any]], k: int = 20, *, filter: FilterLike = None,
                          exclude: Sequence[str] = (), diversity: float | None = None,
                          explain: bool = False) -> Page:
        return self._call(api.recommend_session(events, k, filter, exclude, diversity, explain))

    def similar(self, item_id: str, k: int = 20, *, modality: str | None = None, filter: FilterLike = None,
                exclude: Sequence[str] = (), user_id: str | None = None) -> Page:
        """Items like ``item_id``; ``user_id`` (optional, also on the searches) records who saw the list and assigns
        their experiment variant, whose modality applies unless one is given."""
        return self._call(api.similar(item_id, k, modality, filter, exclude, user_id))

    def search_text(self, query: str, k: int = 20, *, modality: str | None = None, filter: FilterLike = None,
                    exclude: Sequence[str] = (), user_id: str | None = None) -> Page:
        return self._call(api.search_text(query, k, modality, filter, exclude, user_id))

    def search_image(self, image: bytes | str | Path, k: int = 20, *, modality: str | None = None,
                     filter: FilterLike = None, user_id: str | None = None) -> Page:
        return self._call(api.search_image(image, k, modality, filter, user_id))

    def more_like_these(self, positive: Mapping[str, float] | Sequence[str],
                        negative: Mapping[str, float] | Sequence[str] = (), k: int = 20, *,
                        filter: FilterLike = None, exclude: Sequence[str] = ()) -> Page:
        return self._call(api.more_like_these(positive, negative, k, filter, exclude))

    def trending(self, k: int = 20, *, filter: FilterLike = None) -> Page:
        return self._call(api.trending(k, filter))
