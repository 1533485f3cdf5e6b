"""How an explorer page is answered: the caller checked like the API does, templates rendered with the security
headers, and every failure (a domain error, or a query value that breaks a route's declared limits) shown as the
HTML error page with the same status as the API's, never as the API's JSON problem."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from recsys.api.deps import authorize, count_request, identify
from recsys.api.errors import public_message, wait_headers
from recsys.api.web import session
from recsys.errors import AuthError, Forbidden, PayloadTooLarge, RecsysError

WEB = Path(__file__).resolve().parent
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' https: http: data:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    # never kept: Back and Forward ask again, so a page never shows a history or list from before a like (and its
    # Like buttons cannot store the same like twice); /media and the static files keep their own caching
    "Cache-Control": "no-store",
}
POSTED_PAGE_CACHE = "private, no-cache"
"""A full page answering a form post (the results of a search by image): kept by this browser only, so Back from a
result shows it again (a no-store answer to a POST is Chromium's "Confirm Form Resubmission"). ``no-cache``: never
reused for a new request; a history entry is shown from the cache without asking. It holds the result list, never
the picture, which the server drops once searched."""
BIDI_CONTROLS = dict.fromkeys(map(ord, "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))
"""Direction controls a title may carry: a tab title cannot isolate them, so they are left out of it."""

MAX_NEXT = 2000
"""The longest page address a login returns to (longer ones return to the page without its query)."""


class SessionExpired(AuthError):
    """A form post or like without the login session the page was opened with: the page says log in again."""


class AdminKeyNeeded(Forbidden):
    """A login with a narrower key asked for what needs a wider one (a like, an experiment report)."""


@cache
def templates() -> Jinja2Templates:
    t = Jinja2Templates(directory=str(WEB / "templates"))
    t.env.filters["tab_title"] = tab_title
    return t


def tab_title(value: Any) -> str:
    """Text for ``<title>`` (a tab cannot isolate user text): tags of a marked-up title dropped, direction
    controls (a title's U+202E would reverse "· recsys explorer" after it) removed."""
    text = value.striptags() if isinstance(value, Markup) else str(value)
    return text.translate(BIDI_CONTROLS)


async def who(request: Request, scope: str = "read", needs: str = "This page needs") -> None:
    """Check the caller like the API does: the login session's cookie, or a key in a header or a bearer token.
    ``needs``: how a refusal for a read key begins ("Likes need"), in a shopper's words."""
    settings = request.app.state.settings
    cookie = request.cookies.get(session.COOKIE)
    auth = request.headers.get("authorization", "")
    key = request.headers.get("x-api-key") or (auth[7:] if auth.lower().startswith("bearer ") else None)
    if settings.api.auth and not cookie and not key:  # the browser drops the cookie when its max-age runs out
        raise SessionExpired("you are not logged in, or your login session has expired: log in again")
    if cookie and settings.api.auth:
        counted = False

        async def miss() -> None:  # a forged or stale cookie is rate-limited like an unknown key (identify)
            nonlocal counted
            counted = True
            await count_request(request, "miss:" + (request.client.host if request.client else ""))

        principal = await session.principal(settings, request.app.state.keys, cookie, miss=miss)
        if principal is None:
            if not counted:
                await miss()
            raise SessionExpired("your login session has expired or its key was revoked: log in again")
        try:
            await authorize(request, principal, "key:" + principal.name, scope)
        except Forbidden:
            wanted = "an events or admin key" if scope == "events" else "an admin key"
            raise AdminKeyNeeded(f"{needs} {wanted}, and you are logged in with a {principal.scope} key: log in "
                                 f"again with {wanted}") from None
        return
    await identify(request, key, None, scope)


def same_origin(request: Request) -> None:
    """Refuse form posts that a page of another site may have sent (auth may be off: the server trusts loopback
    callers). Browsers name the page's origin on every form post; a post that names none, or the opaque ``null``
    origin (sandboxed frames, ``data:`` pages), is refused too."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise Forbidden("cross-site form posts are refused")
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin == "null":  # the header is there: saying "none" would send an operator after a proxy stripping it
        raise Forbidden("form posts must come from the explorer's own pages (this one came from an opaque 'null' "
                        "origin: a sandboxed frame, a data: page or the like)")
    if not origin:
        raise Forbidden("form posts must come from the explorer's own pages (no Origin header)")
    host = request.headers.get("host", "")
    if urlparse(origin).netloc != host:
        raise Forbidden(f"cross-origin form posts are refused (the page is at {urlparse(origin).netloc!r}, this "
                        f"server was reached as {host!r}); behind a reverse proxy, forward the Host header "
                        "(nginx: proxy_set_header Host $host)")


def came_from(request: Request) -> str:
    """The explorer page a form post or like was sent from (its Referer, on this host), else ``/``."""
    referer = urlparse(request.headers.get("referer", ""))
    if referer.netloc != request.headers.get("host", "") or not referer.path.startswith("/"):
        return "/"
    back = referer.path + ("?" + referer.query if referer.query else "")
    return back if len(back) <= MAX_NEXT else referer.path


def login_url(back: str) -> str:
    return "/login?next=" + quote(back, safe="/")


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    settings = request.app.state.settings
    # "Log out" only for a browser holding a login session (not on the login page before anyone logged in)
    context.setdefault("auth", settings.api.auth and session.COOKIE in request.cookies)
    response = templates().TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    if request.method == "POST" and status_code == 200 and not name.startswith("_"):  # "_": a fetched fragment
        response.headers["Cache-Control"] = POSTED_PAGE_CACHE
    return response


def error(request: Request, e: RecsysError) -> Response:
    """The error page; a page read without a key goes to the login, which comes back to the same address (its
    search, filters and diversity included). A like or form post refused for the login (none, expired, a read key
    where an admin key is needed) says so, with a link to log in that comes back to the page it was sent from."""
    relogin = isinstance(e, AdminKeyNeeded) or (isinstance(e, AuthError) and not isinstance(e, Forbidden))
    here = request.url.path + ("?" + request.url.query if request.url.query else "")
    here = here if len(here) <= MAX_NEXT else request.url.path
    if relogin and request.method == "GET" and not isinstance(e, AdminKeyNeeded):
        return RedirectResponse(login_url(here), status_code=303)
    status = e.status if 400 <= e.status < 600 else 500
    login = login_url(came_from(request) if request.method != "GET" else here) if relogin else None
    answer = render(request, "error.html", status, message=public_message(e), code=e.code, login=login)
    answer.headers.update(wait_headers(request, e, status))  # a 429 or 503 page says when to come back, as the API
    return answer


async def page(request: Request, build: Callable[..., Any], *args: Any) -> Response:
    """A page for a reader: the caller checked, then ``build(request, *args)`` in a worker thread (it reads the
    store), or awaited when it is a coroutine function (it awaits what the API awaits, then reads in a thread);
    a domain error becomes the error page."""
    try:
        await who(request)
        if inspect.iscoroutinefunction(build):
            return await build(request, *args)  # type: ignore[no-any-return]
        return await run_in_threadpool(build, request, *args)
    except RecsysError as e:
        return error(request, e)


def invalid_page(request: Request, exc: RequestValidationError) -> Response:
    """A value outside a route's declared limits (``?diversity=2``, a 3,000-character query, 201 categories): the
    error page with the API's 422 and its words (which value, what is wrong)."""
    errors = list(exc.errors())
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    message = f"{where}: {first.get('msg', 'invalid value')}" if where else "invalid request"
    return render(request, "error.html", 422, message=message[:300], code="invalid")


def too_large_page(request: Request) -> Response:
    """The error page for a form over the server's body limit (``api.max_body_bytes``, refused before the route
    reads it): "search by image" names the smaller of that limit and the image limit, as for a picture under the
    body limit but over the image limit."""
    api = request.app.state.settings.api
    if request.url.path == "/search/image" and api.max_image_bytes < api.max_body_bytes:
        return error(request, PayloadTooLarge(f"the uploaded image is over the limit of {api.max_image_bytes} bytes"))
    return error(request, PayloadTooLarge(f"the upload is over this server's limit of {api.max_body_bytes} bytes "
                                          "(RECSYS_API__MAX_BODY_BYTES)"))


class PageRoute(APIRoute):
    """An explorer route: a request its declared parameters refuse, or a streamed body over the limit, is answered
    with the HTML error page (the API's handlers, installed for the whole app, would answer with JSON)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as e:
                return invalid_page(request, e)
            except HTTPException as e:  # the middleware's limit on a body sent without a Content-Length
                if e.status_code != 413:
                    raise
                return too_large_page(request)

        return route
