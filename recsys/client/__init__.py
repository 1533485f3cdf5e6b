"""Typed Python clients for the recsys HTTP API (httpx), synchronous and asynchronous.

    from recsys.client import Client

    with Client("http://127.0.0.1:8000", api_key="rsk_...") as c:
        c.send_events([{"user_id": "u1", "item_id": "a1", "type": "like", "event_id": "e-1"}])
        page = c.recommend("u1", k=10, filter={"categories": ["shoes"], "price_max": 80}, explain=True)
        for r in page.items:
            print(r.item_id, r.score, r.sources, r.item.title if r.item else "")

    async with AsyncClient("http://127.0.0.1:8000", api_key="rsk_...") as c:
        page = await c.recommend("u1", k=10)

Both have the same methods. Answers 429 (rate limited) and 503 (store down or busy) are retried after the server's
``Retry-After``, and a refused connection (the server restarting) after a doubling backoff (a dropped one too, for
calls that may be sent twice: reads, upserts, events with ids), within a bounded number
of tries and total wait (:class:`Retry`); a 503 that waiting cannot heal (``store_damaged``, ``no_index``, ...) is
not, nor is a timeout (the server may have acted on the request). Errors come back as the server's
:class:`~recsys.errors.RecsysError` subclass (``UnknownItem``, ``StoreUnavailable``, ...) matched by the stable error
code; an unknown code, or an answer that is not recsys JSON, raises :class:`ApiError`, and so does a redirect (code
``redirect``, naming the ``Location``: redirects are never followed, so a write cannot land elsewhere); no answer at
all (server down, timeout) raises :class:`Unreachable` (``health()`` then returns False; ``maybe_applied`` is True
for a write that was sent: resend events with the same ``event_id``, items are upserts, an item delete may be
repeated). An empty id, or one no URL path can address (``/``, ``.``, ``..``), raises ValueError (also a
ValidationFailed) before anything is sent. A base URL without http(s):// or ending in /v1, or an API key no HTTP
header can carry, raises ValueError when the client is made (a key's surrounding whitespace is stripped; no message
shows the key). A batch record with NaN or infinity, or over 8,000,000 bytes alone, is answered ``error`` alone, and
batches go in calls of at most 1,000 records and 8,000,000 bytes. All are RecsysErrors. Each :class:`Result`
carries the item's details (:class:`ItemSummary`: title, category, price, image_url) when the server sends them.
Pass ``http=`` to use your own ``httpx.Client`` / ``httpx.AsyncClient`` (e.g. FastAPI's ``TestClient``, or one with
a ``MockTransport``).
"""

try:
    import httpx  # noqa: F401
except ImportError as e:  # the client needs httpx, which only the api extra installs
    raise ImportError("recsys.client needs httpx: pip install httpx (or pip install 'recsys[api]')") from e

from recsys.client._async import AsyncClient
from recsys.client._base import ApiError, ClientClosed, EventResult, ItemSummary, Page, Result, Retry, Unreachable
from recsys.client._sync import Client

__all__ = ["ApiError", "AsyncClient", "Client", "ClientClosed", "EventResult", "ItemSummary", "Page", "Result",
           "Retry", "Unreachable"]
