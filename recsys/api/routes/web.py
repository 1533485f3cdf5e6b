"""The web explorer: server-rendered pages at ``/`` over the same service calls as the JSON API.

Pages: ``/`` (search by text or by an uploaded image, filters, trending, users), ``/items/{id}`` (the item, its image,
similar items), ``/users/{id}`` (history, recommendations with "because you liked ..." and their sources, like and
dislike buttons that re-rank on the spot), ``/media/{id}`` (an item's recorded image, see
:func:`recsys.api.web.pages.media_file`), ``/status`` (what is served). Auth follows the API: with auth off (loopback
only) every page is open; with auth on, ``/login`` keeps a read key in an HttpOnly cookie and feedback needs an admin
key. Form posts from other origins are refused. How a page is answered (checks, templates, the error page) is in
:mod:`recsys.api.web.render`.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as Upload

from recsys.api.auth import hash_key
from recsys.api.deps import identify
from recsys.api.errors import public_message, public_status, wait_headers
from recsys.api.media import media_roots, public_item
from recsys.api.web import pages, session
from recsys.api.web.render import WEB, PageRoute, error, page, render, same_origin, who
from recsys.errors import RecsysError, UnknownItem, ValidationFailed
from recsys.serving.requests import check_modality
from recsys.store.limits import MAX_ID, MAX_QUERY
from recsys.store.users import user_suggestions

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False, tags=["explorer"], route_class=PageRoute)

STATIC = {"explorer.css": "text/css; charset=utf-8", "explorer.js": "text/javascript; charset=utf-8"}
PAGE_K = 24

Category = Annotated[list[str] | None, Query(max_length=200)]
Text = Annotated[str | None, Query(max_length=64)]


def _rec(request: Request) -> Any:
    return request.app.state.recommender


# -- search --------------------------------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
async def home(request: Request, q: Annotated[str | None, Query(max_length=MAX_QUERY)] = None,
               modality: Annotated[str, Query(max_length=8)] = "fused", category: Category = None,
               price_min: Text = None, price_max: Text = None, in_stock: Text = None) -> Response:
    """Search by text (``q``), else the trending list, plus the most active users."""
    form = pages.filter_form(category, price_min, price_max, in_stock)
    return await page(request, _home, (q or "").strip(), modality, form)


def _home(request: Request, q: str, modality: str, form: pages.FilterForm, *,
          image_results: list[Any] | None = None, image_name: str | None = None) -> Response:
    rec = _rec(request)
    check_modality(modality)
    f = form.item_filter()
    title: Markup  # the user's words isolated: a query's U+202E must not reverse the page's own words after it
    if image_results is not None:
        title, results = Markup("Looks like <bdi>{}</bdi>").format(image_name or "your image"), image_results
    elif q:
        title = Markup("Results for “<bdi>{}</bdi>”").format(q)
        results = rec.search_text(q, PAGE_K, modality=modality, filter=f)
    else:
        title, results = Markup("Trending"), rec.trending(PAGE_K, filter=f)
    return render(request, "home.html", q=q, modality=modality, form=form, title=title,
                  cards=pages.result_cards(rec, results, match=image_results is not None),
                  categories=pages.categories(rec.store),
                  users=pages.active_users(rec.store), serving=rec.status())


@router.post("/search/image", response_class=HTMLResponse)
async def search_image(request: Request, image: Annotated[UploadFile | str | None, File()] = None,
                       modality: Annotated[str, Form(max_length=8)] = "image",
                       category: Annotated[list[str] | None, Form()] = None,
                       price_min: Annotated[str | None, Form(max_length=64)] = None,
                       price_max: Annotated[str | None, Form(max_length=64)] = None,
                       in_stock: Annotated[str | None, Form(max_length=64)] = None) -> Response:
    """Search by an uploaded image (the same size and format limits as ``POST /v1/search/image``). A form sent
    with no file chosen (browsers send an empty part) is told so on the error page."""
    from recsys.api.limits import check_image
    from recsys.errors import PayloadTooLarge

    form = pages.filter_form(category, price_min, price_max, in_stock)
    try:
        await who(request)
        same_origin(request)
        limits = request.app.state.settings.api
        data = await image.read(limits.max_image_bytes + 1) if isinstance(image, Upload) else b""
        if len(data) > limits.max_image_bytes:
            raise PayloadTooLarge(f"the uploaded image is over the limit of {limits.max_image_bytes} bytes")
        if not data:
            raise ValidationFailed("choose an image file to search with")
        check_image(data, max_bytes=limits.max_image_bytes, max_pixels=limits.max_image_pixels,
                    formats=limits.image_formats)
        check_modality(modality)
        rec = _rec(request)
        f = form.item_filter()
        results = await run_in_threadpool(rec.search_image, data, PAGE_K, modality=modality, filter=f)
        name = ((image.filename if isinstance(image, Upload) else None) or "your image")[:80]
        return await run_in_threadpool(_home, request, "", "fused", form, image_results=results, image_name=name)
    except RecsysError as e:
        return error(request, e)


@router.get("/search/image")
@router.get("/feedback")
@router.get("/logout")
def posted_only(request: Request) -> Response:
    """These addresses take a form post. Opened from the address bar (reloaded, copied, typed after an image search
    or a refused like), they go to the search page, never the API's JSON 405; a GET never logs anyone out."""
    return RedirectResponse("/", status_code=303)


# -- item ----------------------------------------------------------------------------------------------------------
@router.get("/items/{item_id:path}", response_class=HTMLResponse)
async def item_page(request: Request, item_id: str, modality: Annotated[str, Query(max_length=8)] = "fused",
                    category: Category = None, price_min: Text = None, price_max: Text = None,
                    in_stock: Text = None, user: Annotated[str | None, Query(max_length=MAX_ID)] = None) -> Response:
    """One item: its images, fields and tags, and the items most similar to it (``user``: whom "Like" is for)."""
    form = pages.filter_form(category, price_min, price_max, in_stock)
    return await page(request, _item, item_id, modality, form, (user or "").strip())


def _item(request: Request, item_id: str, modality: str, form: pages.FilterForm, user: str) -> Response:
    from recsys.store.items import deleted_message

    rec = _rec(request)
    check_modality(modality)
    stored = rec.get_item(item_id)
    if stored.get("deleted"):  # gone for shoppers at once, as GET /v1/items/{id} says
        raise UnknownItem(deleted_message(item_id))
    card = pages.item_card(rec, item_id)
    # numbered as /media?n= numbers them: the images that did not fail, and none for a hidden item
    images = list(range(len(pages.image_media(stored)))) if card.image_url else []
    similar_note = None
    try:
        similar = pages.result_cards(rec, rec.similar(item_id, PAGE_K, modality=modality, filter=form.item_filter()),
                                     match=True)
    except RecsysError as e:  # e.g. not indexed yet: the item itself still shows
        similar, similar_note = [], public_message(e)
    return render(request, "item.html", item=public_item(stored), card=card, images=images,
                  similar=similar, similar_note=similar_note, modality=modality, form=form,
                  categories=pages.categories(rec.store), user=user)


# -- user ----------------------------------------------------------------------------------------------------------
@router.get("/users/{user_id:path}", response_class=HTMLResponse)
async def user_page(request: Request, user_id: str, category: Category = None, price_min: Text = None,
                    price_max: Text = None, in_stock: Text = None,
                    diversity: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
                    fragment: Annotated[bool, Query()] = False,
                    user: Annotated[str | None, Query(max_length=MAX_ID)] = None,
                    liked: Annotated[str | None, Query(max_length=MAX_ID)] = None,
                    disliked: Annotated[str | None, Query(max_length=MAX_ID)] = None) -> Response:
    """A user's history and recommendations (``fragment=1``: only the part the like buttons refresh; ``liked`` or
    ``disliked``: the item a like without JavaScript just stored, said in the page; ``diversity`` None: the one the
    API would rank with, the user's experiment variant's or the configured one)."""
    if not user_id and user and user.strip():  # the "open user" form without JavaScript
        return RedirectResponse("/users/" + quote(user.strip(), safe=""), status_code=303)
    if user_id.strip() and user_id != user_id.strip():  # the store keeps ids trimmed: " u9 " is u9
        query = request.url.query
        return RedirectResponse("/users/" + quote(user_id.strip(), safe="") + ("?" + query if query else ""),
                                status_code=303)
    form = pages.filter_form(category, price_min, price_max, in_stock)
    told = ("like", liked) if liked else ("dislike", disliked) if disliked else None
    return await page(request, _user, user_id, form, diversity, fragment, None, told)


async def _user(request: Request, user_id: str, form: pages.FilterForm, diversity: float | None, fragment: bool,
                message: str | None = None, told: tuple[str, str] | None = None) -> Response:
    if not user_id or len(user_id) > MAX_ID or "\x00" in user_id:
        raise ValidationFailed(f"a user id is 1 to {MAX_ID} characters")
    # the list GET /v1/users/{id}/recommendations serves: the user's experiment variant, the shown items left out
    served = await pages.personal_list(request, _rec(request), user_id, form.item_filter(), diversity, PAGE_K)
    return await run_in_threadpool(_user_view, request, user_id, form, diversity, fragment, message, told, served)


def _user_view(request: Request, user_id: str, form: pages.FilterForm, diversity: float | None, fragment: bool,
               message: str | None, told: tuple[str, str] | None, served: pages.PersonalList) -> Response:
    rec = _rec(request)
    hist, n_events = pages.history(rec, user_id)
    if told:  # a first event of a user id the store did not know: a typo in "Like as user" made a new shopper
        first = n_events == 1 and hist[0].item_id == told[1]
        message = _feedback_message(rec, told[1], told[0], user_id if first else None)
    context: dict[str, Any] = {"user_id": user_id, "recs": pages.result_cards(rec, served.items), "history": hist,
                               "n_events": n_events, "form": form, "diversity": diversity, "message": message,
                               "fragment": fragment, "served": served,
                               "suggestions": user_suggestions(rec.store, user_id) if not n_events else None}
    if fragment:
        return render(request, "_user_live.html", **context)
    return render(request, "user.html", categories=pages.categories(rec.store), **context)


@router.post("/feedback", response_class=HTMLResponse)
async def feedback(request: Request, user_id: Annotated[str, Form(min_length=1, max_length=MAX_ID)],
                   item_id: Annotated[str, Form(min_length=1, max_length=MAX_ID)],
                   type: Annotated[str, Form(max_length=16)] = "like",
                   category: Annotated[list[str] | None, Form()] = None,
                   price_min: Annotated[str | None, Form(max_length=64)] = None,
                   price_max: Annotated[str | None, Form(max_length=64)] = None,
                   in_stock: Annotated[str | None, Form(max_length=64)] = None,
                   diversity: Annotated[float | None, Form(ge=0.0, le=1.0)] = None) -> Response:
    """Store a like or dislike, then answer with the re-ranked recommendations (fetch) or redirect (plain form)."""
    form = pages.filter_form(category, price_min, price_max, in_stock)
    user_id = user_id.strip()  # as the store keeps it: the page shown next is the user the event went to
    try:
        await who(request, "events", needs="Likes need")
        same_origin(request)
        if type not in ("like", "dislike"):
            raise ValidationFailed("feedback is a like or a dislike")
        if not user_id:
            raise ValidationFailed(f"a user id is 1 to {MAX_ID} characters")
        rec = _rec(request)
        await run_in_threadpool(_refuse_removed, rec, item_id, type)
        event = {"user_id": user_id, "item_id": item_id, "type": type}
        results = await run_in_threadpool(rec.catalogue.ingest_events, [event])
        res = results[0] if results else None
        status = getattr(res, "status", None) or (res.get("status") if isinstance(res, dict) else None)
        if status:  # counted as POST /v1/events counts: every event the server is given, whichever route
            request.app.state.metrics.events.labels(status).inc()
        if status == "error":
            problem = getattr(res, "error", None) or (res.get("error") if isinstance(res, dict) else None)
            raise ValidationFailed(f"the {type} was not stored: {problem}")
        if request.headers.get("x-explorer") != "fetch":  # no JavaScript: the page says what was stored
            chosen = {} if diversity is None else {"diversity": diversity}  # none: the page ranks as the API would
            query = "&".join(q for q in (form.query(), urlencode(chosen), urlencode({f"{type}d": item_id})) if q)
            return RedirectResponse(f"/users/{quote(user_id, safe='')}?{query}", status_code=303)
        return await _user(request, user_id, form, diversity, True, None, (type, item_id))
    except RecsysError as e:
        return error(request, e)


def _refuse_removed(rec: Any, item_id: str, type: str) -> None:
    """A hidden or deleted item takes no likes: a user page loaded before it was removed still shows its buttons,
    and the store would keep the event (for a deleted one with only a warning) and answer as if all went well."""
    try:
        stored = rec.get_item(item_id)
    except UnknownItem:
        return  # the store's own answer for an unknown item (ingest_events) follows
    state = "deleted" if stored.get("deleted") else "hidden" if stored.get("hidden") else None
    if state:
        raise ValidationFailed(f"“{stored.get('title') or item_id}” is {state}: shoppers no longer see it, "
                               f"so it can no longer be {type}d")


def _feedback_message(rec: Any, item_id: str, type: str, new_user: str | None = None) -> Markup | None:
    """"You liked …" for a stored item; None for an id the store does not know (``?liked=`` is any caller's text).
    The title is isolated (``<bdi>``): its direction controls stay inside it. ``new_user``: the like was that
    shopper's first event (a new shopper, perhaps a mistyped id)."""
    card = pages.item_card(rec, item_id)
    if card.note:
        return None
    said = Markup("You {}d “<bdi>{}</bdi>”").format(type, card.title)
    if new_user:
        said += Markup(" as <bdi>{}</bdi>, a new shopper (their first event)").format(new_user)
    return said + ": recommendations updated."


# -- experiments ---------------------------------------------------------------------------------------------------
@router.get("/experiments", response_class=HTMLResponse)
async def experiments_page(request: Request) -> Response:
    """The configured experiments (an admin page: reports show business figures)."""
    try:
        await who(request, "admin", needs="Experiment reports need")
        from recsys.api.routes.experiments import experiments_of

        return render(request, "experiments.html", experiments=[e.public() for e in experiments_of(request).all])
    except RecsysError as e:
        return error(request, e)


@router.get("/experiments/{name}", response_class=HTMLResponse)
async def experiment_page(request: Request, name: str) -> Response:
    """One experiment's report: the table and its rates as bars with 95% intervals (inline SVG)."""
    try:
        await who(request, "admin", needs="Experiment reports need")
        return await run_in_threadpool(_experiment, request, name)
    except RecsysError as e:
        return error(request, e)


def _experiment(request: Request, name: str) -> Response:
    from recsys.api.routes.experiments import experiments_of
    from recsys.api.web.plots import interval_bars
    from recsys.experiments import experiment_report

    exp = experiments_of(request).get(name)
    report = experiment_report(_rec(request).store, exp)
    plots = {"ctr": interval_bars(report["variants"], "ctr", "CTR"),
             "conversion": interval_bars(report["variants"], "conversion_rate", "Conversion rate")}
    return render(request, "experiment.html", report=report, definition=exp.public(), plots=plots,
                  changes={v.name: v.changes() for v in exp.variants})


# -- status, media, static, login ----------------------------------------------------------------------------------
@router.get("/status", response_class=HTMLResponse)
async def status_page(request: Request) -> Response:
    """What ``GET /v1/status`` says, as a page (the API routes do not take the explorer's login cookie)."""
    runtime = request.app.state.runtime
    return await page(request, lambda r: render(r, "status.html", status={
        **public_status(runtime.status), "ready": runtime.ready, "store": runtime.store_ok}))


@router.get("/media/{item_id:path}")
async def media(request: Request, item_id: str, n: Annotated[int, Query(ge=0, le=1000)] = 0) -> Response:
    """An item's ``n``-th recorded image (never a path taken from the request; allow-listed image types only)."""
    try:
        await who(request)
        settings = request.app.state.settings
        found = await run_in_threadpool(pages.media_file, _rec(request), item_id, n, media_roots(settings),
                                        settings.home)
    except RecsysError as e:  # plain text (an <img> shows none of it); a 429 or 503 says when to retry, as the API's
        status = e.status if 400 <= e.status < 600 else 500
        return Response(public_message(e), status_code=status, media_type="text/plain; charset=utf-8",
                        headers={"X-Content-Type-Options": "nosniff", **wait_headers(request, e, status)})
    if isinstance(found, str):
        return RedirectResponse(found, status_code=307)
    path, ctype = found
    return FileResponse(path, media_type=ctype, headers={
        "X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600",
        "Content-Security-Policy": "default-src 'none'", "Content-Disposition": "inline"})


@router.get("/explorer/static/{name}")
def static(name: str) -> Response:
    """The explorer's own CSS and JS (a fixed list of files: no paths from the request)."""
    if name not in STATIC:
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(WEB / "static" / name, media_type=STATIC[name],
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


@router.get("/favicon.ico")
def favicon() -> Response:
    """No icon, said without an error (a 404 here was a console error on every page)."""
    return Response(status_code=204, headers={"Cache-Control": "public, max-age=86400"})


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: Annotated[str, Query(max_length=2000)] = "/") -> Response:
    return render(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, key: Annotated[str, Form(min_length=1, max_length=500)],
                next: Annotated[str, Form(max_length=2000)] = "/") -> Response:
    """Check an API key and keep it in an HttpOnly, SameSite=Strict cookie for the explorer pages."""
    key = key.strip()  # pasted from a terminal with a space or newline, as an HTTP header would be trimmed
    try:
        same_origin(request)
        principal = await identify(request, key, None, "read")
    except RecsysError as e:
        return render(request, "login.html", e.status, next=_safe_next(next), error=public_message(e))
    response = RedirectResponse(_safe_next(next), status_code=303)
    settings = request.app.state.settings
    if settings.api.auth:
        value, ttl = session.issue(settings, principal, hash_key(key))
        response.set_cookie(session.COOKIE, value, max_age=ttl, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    try:
        same_origin(request)  # another site may not log the user out either
    except RecsysError as e:
        return error(request, e)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(session.COOKIE)
    return response


def _safe_next(url: str) -> str:
    """Only a local path: never redirect a login to another site."""
    return url if url.startswith("/") and not url.startswith("//") and "\\" not in url else "/"
