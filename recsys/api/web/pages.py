"""What the explorer pages show, gathered from the service layer and the store: item cards, filters, histories,
and the one safe way from an item id to an image file.

Images: :func:`media_file` never takes a path from the request. It looks up the media URIs recorded in the store for
that item, keeps local image files whose first bytes are one of the allowed image formats (the content type comes
from those bytes, not from the file name) and refuses anything else.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from recsys.errors import NotFound, RecsysError, ValidationFailed
from recsys.serving.reasons import shows_look_alike

log = logging.getLogger(__name__)

MAX_MEDIA_BYTES = 20_000_000
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
    (b"BM", 0, "image/bmp"),  # embedded like the rest: its page showed an empty tile
)
"""The content-type allow-list, by magic bytes (SVG and anything scriptable is never served)."""
EVENT_ICONS = {"purchase": "bought", "add_to_cart": "carted", "click": "clicked", "view": "viewed",
               "rating": "rated", "like": "liked", "dislike": "disliked"}


@dataclass
class Card:
    """One item as a tile: its details, its result score and sources, and (recommendations) why."""

    item_id: str
    title: str = ""
    category: str | None = None
    price: float | None = None
    in_stock: bool | None = None
    image_url: str | None = None
    score: float | None = None
    sources: list[str] = field(default_factory=list)
    explanation: dict[str, Any] | None = None
    because_of: Card | None = None
    note: str | None = None
    removed: str | None = None
    """"hidden" or "deleted": no longer shown to shoppers (and no picture: ``/media`` refuses it)."""

    @property
    def tags(self) -> list[tuple[str, str]]:
        """Each source with what it means, for its tooltip (the names are the ranker's words). "similar" on a
        similar-items result (it has a match score) means near this item, not near a history."""
        from recsys.serving.reasons import SOURCE_REASONS

        words = {**SOURCE_REASONS, **RESULT_SOURCES} if self.score is not None else {**RESULT_SOURCES,
                                                                                      **SOURCE_REASONS}
        return [(s, words.get(s, s)) for s in self.sources]

    @property
    def url(self) -> str:
        return "/items/" + quote(self.item_id, safe="")

    def link(self, user: str | None = None) -> str:
        """The item page's address; from a user's page it carries the user, whom the item page's "Like" is for."""
        return self.url + ("?user=" + quote(user, safe="") if user else "")

    @property
    def price_text(self) -> str:
        return "" if self.price is None or not math.isfinite(self.price) else f"{self.price:,.2f}"

    @property
    def match_text(self) -> str:
        """A search or similar result's cosine as "match 83%"; a ranker's score means nothing to a reader: none."""
        return "" if self.score is None else f"match {max(0.0, min(1.0, self.score)) * 100:.0f}%"

    @property
    def because_text(self) -> str:
        """Why, in the words of the event behind it: "you bought this on ...", "like ... you viewed"."""
        e = self.explanation or {}
        ev = e.get("because_event") or {}
        verb = VERBS.get(str(ev.get("type")), "liked")
        if e.get("reason") == "repeat":
            return f"you {verb} this on {ev.get('date')}" if ev.get("date") else f"you {verb} this before"
        return f"like an item you {verb}"


RESULT_SOURCES = {"search": "near your words by meaning", "lexical": "has your words",
                  "generated": "only in its description generated from the image", "id": "its id is your words",
                  "image_search": "looks like your picture", "similar": "near this item"}
"""What a search or similar result's source means (a recommendation's are in recsys.serving.reasons)."""


VERBS = {"purchase": "bought", "view": "viewed", "click": "clicked", "add_to_cart": "put in your cart",
         "like": "liked", "rating": "rated"}


def image_media(details: dict[str, Any]) -> list[dict[str, Any]]:
    """The item's images that can be shown, in the order ``/media/{id}?n=`` numbers them (failed ones left out)."""
    return [m for m in details.get("media") or () if m.get("kind") == "image" and m.get("status") != "error"]


def item_card(rec: Any, item_id: str) -> Card:
    """A card from ``rec.get_item``; an item the store does not know becomes a bare card with a note."""
    try:
        d = rec.get_item(item_id)
    except RecsysError as e:
        from recsys.api.errors import public_message

        return Card(item_id, title=item_id, note=public_message(e))
    price = d.get("price")
    removed = "deleted" if d.get("deleted") else "hidden" if d.get("hidden") else None
    return Card(item_id=str(d.get("item_id", item_id)), title=str(d.get("title") or item_id),
                category=d.get("category"), price=float(price) if price is not None else None,
                in_stock=d.get("in_stock"), removed=removed,
                image_url=("/media/" + quote(item_id, safe="")) if image_media(d) and not removed else None)


def result_cards(rec: Any, results: list[Any], *, match: bool = False) -> list[Card]:
    """Cards for service results (``ScoredItem`` or dicts), with the explanation's ``because_of`` item resolved.
    ``match``: the scores are cosine similarities (search, similar) and are shown; a ranker's are not."""
    cards: list[Card] = []
    seen: dict[str, Card] = {}
    for r in results:
        d = r.to_dict() if hasattr(r, "to_dict") else dict(r)
        card = item_card(rec, str(d["item_id"]))
        score = d.get("score")
        card.score = float(score) if match and score is not None and math.isfinite(float(score)) else None
        card.sources = [str(s) for s in d.get("sources") or ()]
        card.explanation = d.get("explanation")
        e = card.explanation or {}
        because = e.get("because_of")
        if because and shows_look_alike(e):
            if because not in seen:
                seen[because] = item_card(rec, str(because))
            card.because_of = seen[because]
        cards.append(card)
    return cards


# -- store reads ---------------------------------------------------------------------------------------------------
def categories(store: Any, limit: int = 500) -> list[str]:
    """Distinct categories of live items, for the filter form."""
    from recsys.store.queries import live_categories

    with store.session() as s:
        return live_categories(s, limit)


def active_users(store: Any, limit: int = 24) -> list[tuple[str, int]]:
    """(user id, event count) of the users with the most events."""
    from recsys.store.queries import most_active_users

    with store.session() as s:
        return most_active_users(s, limit)


def history(rec: Any, user_id: str, limit: int = 24) -> tuple[list[Card], int]:
    """The user's most recent events as cards (newest first, one per item) and the total event count."""
    from recsys.store.queries import events_frame

    with rec.store.session() as s:
        df = events_frame(s, users=[user_id])
    total = len(df)
    cards: list[Card] = []
    seen: set[str] = set()
    for row in df.iloc[::-1].itertuples():
        item = str(row.item_id)
        if item in seen:
            continue
        seen.add(item)
        card = item_card(rec, item)
        card.note = f"{EVENT_ICONS.get(str(row.type), str(row.type))} {row.ts:%Y-%m-%d %H:%M}"
        card.sources = [str(row.type)]
        cards.append(card)
        if len(cards) >= limit:
            break
    return cards, total


# -- the served list -----------------------------------------------------------------------------------------------
@dataclass
class PersonalList:
    """A user's recommendations as ``GET /v1/users/{id}/recommendations`` serves them now."""

    items: list[Any]
    assigned: Any = None
    """The user's :class:`recsys.experiments.Assignment` on personal lists (None: no experiment running there)."""
    diversity: float = 0.0
    """The MMR weight ranked with: the page's, else the variant's, else ``ranking.diversity``."""
    left_out: int = 0
    """Items the feed leaves out: those shown to the user within ``feedback.exclude_shown_hours``."""
    hours: float = 0.0
    """That window (0: off)."""


async def personal_list(request: Any, rec: Any, user_id: str, item_filter: Any, diversity: float | None,
                        k: int) -> PersonalList:
    """The list the API would serve ``user_id`` now, by the API route's own steps: the items the feed leaves out
    (:func:`recsys.api.routes.feeds.left_out`), the user's variant (:func:`recsys.api.routes.experiments.assignment`)
    and its rules and diversity (``list_rules``). ``diversity`` None: the variant's or the configured one. Nothing
    is recorded as served: looking at a user in the explorer shows them nothing."""
    from recsys.api.routes.experiments import assignment, list_rules
    from recsys.api.routes.feeds import left_out
    from recsys.api.schemas import RecommendRequest

    body = RecommendRequest(k=k, diversity=diversity, explain=True)
    _, exclude = await left_out(request, body, user_id)
    assigned = assignment(request, "recommendations", user_id)
    rules, ranked_with = list_rules(body, assigned)
    items, _ = await rec.arecommend(user_id, k, filter=item_filter, exclude=exclude, diversity=ranked_with,
                                    explain=True, rules=rules)
    settings = request.app.state.settings
    if ranked_with is None:
        ranked_with = settings.ranking.diversity
    return PersonalList(list(items), assigned, float(ranked_with), len(exclude),
                        float(settings.feedback.exclude_shown_hours or 0.0))


# -- filters -------------------------------------------------------------------------------------------------------
@dataclass
class FilterForm:
    """The filter form's state, echoed back into the page, and the service filter it stands for."""

    categories: list[str] = field(default_factory=list)
    price_min: str = ""
    price_max: str = ""
    in_stock: bool = False

    def item_filter(self) -> Any:
        from recsys.index import ItemFilter

        lo, hi = _number(self.price_min, "price_min"), _number(self.price_max, "price_max")
        # ItemFilter.of refuses a minimum above the maximum
        f = ItemFilter.of(categories=self.categories or None, price_min=lo, price_max=hi,
                          in_stock=True if self.in_stock else None)
        return None if f.is_empty else f

    def query(self) -> str:
        """The filter as a query string (kept on links between pages)."""
        from urllib.parse import urlencode

        pairs: list[tuple[str, str]] = [("category", c) for c in self.categories]
        pairs += [(k, v) for k, v in (("price_min", self.price_min), ("price_max", self.price_max)) if v]
        if self.in_stock:
            pairs.append(("in_stock", "true"))
        return urlencode(pairs)


def filter_form(category: list[str] | None, price_min: str | None, price_max: str | None,
                in_stock: str | None) -> FilterForm:
    cats = [c for c in (category or []) if c and len(c) <= 400 and "\x00" not in c][:200]
    return FilterForm(cats, (price_min or "").strip()[:32], (price_max or "").strip()[:32],
                      (in_stock or "").lower() in ("1", "true", "on", "yes"))


def _number(text: str, name: str) -> float | None:
    if not text:
        return None
    try:
        v = float(text)
    except ValueError:
        raise ValidationFailed(f"{name} is not a number: {text[:32]!r}") from None
    if not math.isfinite(v):
        raise ValidationFailed(f"{name} must be a finite number")
    return v


# -- media ---------------------------------------------------------------------------------------------------------
def sniff(head: bytes) -> str | None:
    """The content type for the first bytes of a file, if it is one of the allowed image formats."""
    for magic, offset, ctype in _SIGNATURES:
        if head[offset: offset + len(magic)] == magic and (ctype != "image/webp" or head[:4] == b"RIFF"):
            return ctype
    return None


def media_file(rec: Any, item_id: str, position: int = 0, roots: list[Path] | None = None,
               home: Path | None = None) -> tuple[Path, str] | str:
    """The ``position``-th image recorded for ``item_id``: ``(path, content type)`` for a local file under one of
    ``roots`` (:mod:`recsys.api.media`; a recorded path missing or outside them is looked for under ``home``, the
    data directory, which may have moved since the import), or an ``http(s)`` URL to redirect to. Raises NotFound
    for anything else (no image, removed item, a file outside the roots, missing, too large or not an allowed image
    format), with one message for all of them: the answer tells nothing about the server's files."""
    from recsys.api.media import local_path, relocated, under_roots

    details = rec.get_item(item_id)
    if details.get("deleted") or details.get("hidden"):
        raise NotFound(f"item {item_id!r} is not available")
    images = image_media(details)
    if not 0 <= position < len(images):
        raise NotFound(f"item {item_id!r} has no image #{position}")
    uri = str(images[position].get("uri") or "")
    path = local_path(uri)
    if path is None:
        return uri
    unavailable = NotFound(f"item {item_id!r}: image #{position} is not available")
    if urlparse(uri).scheme not in ("", "file") and len(urlparse(uri).scheme) > 1:  # "C:" is a drive, not a scheme
        raise unavailable
    inside = under_roots(path, roots or [])  # checked before the file is touched
    if not inside or not path.is_file():
        # the home moved or was copied since the import: its own copy of the picture, never a file outside the roots
        moved = relocated(path, home, roots or []) if home is not None else None
        if moved is None:
            if not inside:
                log.warning("item %s: media %s is outside the media roots (api.media_roots) and not found under the "
                            "data directory either; not served", item_id, path)
            raise unavailable
        path = moved
    try:
        path = path.resolve(strict=True)
        if not path.is_file() or path.stat().st_size > MAX_MEDIA_BYTES:
            raise unavailable
        with path.open("rb") as f:
            head = f.read(16)
    except OSError:
        raise unavailable from None
    ctype = sniff(head)
    if ctype is None:
        log.warning("item %s: media %s is not an allowed image format; not served", item_id, path)
        raise unavailable
    return path, ctype
