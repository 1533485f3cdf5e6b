"""Dependencies shared by the routes: the recommender, the caller's identity (API key + scope), rate limits.

The app accepts any object with the :class:`RecommenderLike` methods (its writes behind ``catalogue``), e.g. the
real :class:`recsys.service.Recommender` or the in-memory :class:`recsys.api.testing.FakeRecommender`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from recsys.api.auth import ANONYMOUS, KeyRing, Principal, hash_key
from recsys.api.limits import RateLimiter
from recsys.config import Settings
from recsys.errors import AuthError, Forbidden, SchemaBehind, StoreUnavailable


class CatalogueLike(Protocol):
    """What the API writes through: the recommender's ``catalogue`` (:class:`recsys.catalogue.Catalogue`)."""

    def ingest_events(self, events: Sequence[Mapping[str, Any]]) -> list[Any]: ...

    def delete_user(self, user_id: str) -> int: ...

    def unknown_items(self, item_ids: Sequence[str]) -> list[str]: ...

    def upsert_items(self, items: Sequence[Mapping[str, Any]], *, index: bool = True) -> list[dict[str, Any]]: ...

    def delete_item(self, item_id: str) -> Any: ...


class RecommenderLike(Protocol):
    """What the API needs from the service layer."""

    store: Any

    def search_text(self, query: str, k: int = 20, *, modality: str = "fused", filter: Any = None,
                    exclude: Sequence[str] = (), mode: str | None = None,
                    lexical_weight: float | None = None) -> list[Any]: ...

    def search_image(self, image: bytes, k: int = 20, *, modality: str = "image", filter: Any = None,
                     exclude: Sequence[str] = ()) -> list[Any]: ...

    def similar(self, item_id: str, k: int = 20, *, modality: str = "fused", filter: Any = None,
                exclude: Sequence[str] = ()) -> list[Any]: ...

    def more_like_these(self, positive: Mapping[str, float], negative: Mapping[str, float] | None = None,
                        k: int = 20, *, filter: Any = None, exclude: Sequence[str] = ()) -> list[Any]: ...

    def trending(self, k: int = 20, *, filter: Any = None, exclude: Sequence[str] = ()) -> list[Any]: ...

    def recommend(self, user_id: str, k: int = 20, *, filter: Any = None, exclude: Sequence[str] = (),
                  diversity: float | None = None, explain: bool = False,
                  fresh: bool = False, now: Any = None, rules: Any = None) -> Any: ...

    def buy_again(self, user_id: str, k: int = 20, *, now: Any = None) -> Any: ...

    async def arecommend(self, user_id: str, k: int = 20, *, filter: Any = None, exclude: Sequence[str] = (),
                         diversity: float | None = None, explain: bool = False,
                         fresh: bool = False, now: Any = None,
                         rules: Any = None) -> tuple[list[Any], dict[str, float]]: ...

    def recommend_for_events(self, events: Sequence[Mapping[str, Any]], k: int = 20, *, filter: Any = None,
                             exclude: Sequence[str] = (), diversity: float | None = None,
                             explain: bool = False, rules: Any = None) -> list[Any]: ...

    def get_item(self, item_id: str) -> dict[str, Any]: ...

    @property
    def catalogue(self) -> CatalogueLike: ...

    def refresh(self, *, strict: bool = False) -> bool: ...

    def status(self) -> dict[str, Any]: ...


async def get_recommender(request: Request) -> RecommenderLike:
    runtime = request.app.state.runtime
    if not runtime.migrated:  # started while the database was down: nothing can be read yet
        if runtime.schema_error:
            raise SchemaBehind(runtime.schema_error)
        raise StoreUnavailable("the database is unreachable; retry shortly")
    return request.app.state.recommender  # type: ignore[no-any-return]


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


# async: FastAPI runs a plain-def dependency in the threadpool, a hop that costs more than these lookups
RecommenderDep = Annotated[RecommenderLike, Depends(get_recommender)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key (`recsys keys create`)")
_bearer = HTTPBearer(auto_error=False, description="an API key as a bearer token")


async def identify(request: Request, header_key: str | None, bearer: HTTPAuthorizationCredentials | None,
                   scope: str) -> Principal:
    """The caller of ``request`` (a key from the header or a bearer token; anonymous with auth off), counted against
    its rate limit and checked for ``scope``."""
    state = request.app.state
    if not state.settings.api.auth:
        principal = ANONYMOUS
        limit_key = "anon:" + (request.client.host if request.client else "")
    else:
        key = header_key or (bearer.credentials if bearer else None)
        address = request.client.host if request.client else ""
        if not key:  # counted per client address like unknown keys: a flood without a key was never limited
            await count_request(request, "miss:" + address)
            raise AuthError("an API key is required: send it as `X-API-Key: KEY` or `Authorization: Bearer KEY`")
        ring: KeyRing = state.keys
        found = ring.lookup(key)
        if found is None:
            # Unknown keys cost a database lookup: rate-limit them per client address like a key.
            await count_request(request, "miss:" + address)
            found = await run_in_threadpool(ring.fetch, key)
        elif await ring.revoked(hash_key(key)):
            found = None
        if found is None:
            raise AuthError("unknown or revoked API key")
        principal = found
        limit_key = "key:" + principal.name
    return await authorize(request, principal, limit_key, scope)


async def count_request(request: Request, limit_key: str) -> None:
    """Count the request against ``limit_key``'s rate limit; the middleware sends the ``RateLimit-*`` headers."""
    limiter: RateLimiter = request.app.state.limiter
    status = await limiter.check(limit_key)
    if status is not None:
        request.state.ratelimit = status
        status.raise_if_over()


async def authorize(request: Request, principal: Principal, limit_key: str, scope: str) -> Principal:
    """An identified caller: counted against its rate limit, then checked for ``scope``."""
    request.state.principal = principal
    await count_request(request, limit_key)
    if not principal.allows(scope):
        raise Forbidden(f"this API key has the {principal.scope!r} scope; this call needs {scope!r}")
    return principal


async def require_read(request: Request, header_key: Annotated[str | None, Security(_api_key_header)] = None,
                       bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None) -> Principal:
    return await identify(request, header_key, bearer, "read")


async def require_admin(request: Request, header_key: Annotated[str | None, Security(_api_key_header)] = None,
                        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None) -> Principal:
    return await identify(request, header_key, bearer, "admin")


async def require_events(request: Request, header_key: Annotated[str | None, Security(_api_key_header)] = None,
                         bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None) -> Principal:
    return await identify(request, header_key, bearer, "events")


async def require_metrics(request: Request,
                          header_key: Annotated[str | None, Security(_api_key_header)] = None,
                          bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
                          ) -> Principal:
    """A read key, unless ``api.metrics_public`` opens /metrics to scrapers without one (counted per address)."""
    if request.app.state.settings.api.metrics_public:
        return await authorize(request, SCRAPER, "scraper:" + (request.client.host if request.client else ""), "read")
    return await identify(request, header_key, bearer, "read")


SCRAPER = Principal("scraper", "read")
ReadKey = Annotated[Principal, Depends(require_read)]
AdminKey = Annotated[Principal, Depends(require_admin)]
EventsKey = Annotated[Principal, Depends(require_events)]
MetricsKey = Annotated[Principal, Depends(require_metrics)]
