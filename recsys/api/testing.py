"""A first-class fake of the service layer for testing code that talks to the API (httpx ``MockTransport`` style).

    app = create_app(settings, recommender=FakeRecommender(store, items=[{"item_id": "a", "category": "shoes"}]))

Everything is in memory and deterministic: text search scores word overlap with the title and category, similar
items share a category, a user's recommendations follow the categories of the items they interacted with (liked and
bought count more, disliked items never come back) and an unknown user gets trending items tagged ``popular``.
It needs a :class:`~recsys.store.Store` only for API keys and ``ping``.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from recsys.errors import BadMedia, UnknownItem, UnknownUser, ValidationFailed
from recsys.serving.results import ScoredItem
from recsys.store.events import EventResult

_WEIGHTS = {"view": 1.0, "click": 1.5, "add_to_cart": 2.0, "purchase": 3.0, "rating": 1.0, "like": 3.0,
            "dislike": -5.0, "impression": 0.0}


FakeResult = ScoredItem  # the fake answers with the real result types
FakeEventResult = EventResult


class FakeRecommender:
    """In-memory stand-in for :class:`recsys.service.Recommender` with the same public methods (and its writes
    behind ``catalogue``: :class:`FakeCatalogue`)."""

    def __init__(self, store: Any, items: Iterable[Mapping[str, Any]] = (), *, generation: str = "gen-1") -> None:
        self.store = store
        self.items: dict[str, dict[str, Any]] = {}
        self.events: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self.catalogue = FakeCatalogue(self)
        self.generation = generation
        self.pending_generation: str | None = None
        self.last_timings: dict[str, float] | None = None
        self.last_rules: Any = None
        """The rules of the last personal list asked for (tests of experiments and business rules)."""
        self.last_search: dict[str, Any] = {}
        for it in items:
            self.catalogue.upsert_items([it])

    # -- operations ---------------------------------------------------------------------------------------------
    def refresh(self, *, strict: bool = False) -> bool:
        """Swap in ``pending_generation`` (set by a test); ``strict`` is the real one's (nothing here can fail)."""
        if self.pending_generation is None:
            return False
        self.generation, self.pending_generation = self.pending_generation, None
        return True

    def status(self) -> dict[str, Any]:
        return {"ready": True, "index_generation": self.generation, "ranker_version": "fake-ranker",
                "encoder_id": "fake-encoder"}

    # -- items --------------------------------------------------------------------------------------------------
    def get_item(self, item_id: str) -> dict[str, Any]:
        if item_id not in self.items:
            raise UnknownItem(f"unknown item id {item_id!r}")
        return dict(self.items[item_id])

    # -- retrieval ----------------------------------------------------------------------------------------------
    def search_text(self, query: str, k: int = 20, *, modality: str = "fused", filter: Any = None,
                    exclude: Sequence[str] = (), mode: str | None = None,
                    lexical_weight: float | None = None) -> list[FakeResult]:
        self.last_search = {"mode": mode, "lexical_weight": lexical_weight}
        words = {w for w in query.lower().split() if w}
        scored = []
        for item_id, it in self._candidates(filter, exclude):
            text = f"{it.get('title') or ''} {it.get('category') or ''}".lower().split()
            overlap = len(words & set(text))
            if overlap:
                scored.append(FakeResult(item_id, overlap / max(1, len(words)), ["search"]))
        return _top(scored, k)

    def search_image(self, image: bytes, k: int = 20, *, modality: str = "image", filter: Any = None,
                     exclude: Sequence[str] = ()) -> list[FakeResult]:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(image)) as im:
                im.load()
        except Exception as e:
            raise BadMedia(f"undecodable image: {e}") from None
        return _top([FakeResult(i, 1.0, ["image"]) for i, _ in self._candidates(filter, exclude)], k)

    def similar(self, item_id: str, k: int = 20, *, modality: str = "fused", filter: Any = None,
                exclude: Sequence[str] = ()) -> list[FakeResult]:
        category = self.get_item(item_id).get("category")
        return _top([FakeResult(i, 1.0 if it.get("category") == category else 0.1, ["content"])
                     for i, it in self._candidates(filter, [*exclude, item_id])], k)

    def more_like_these(self, positive: Mapping[str, float], negative: Mapping[str, float] | None = None,
                        k: int = 20, *, filter: Any = None, exclude: Sequence[str] = ()) -> list[FakeResult]:
        taste: defaultdict[str, float] = defaultdict(float)
        for item_id, w in positive.items():
            taste[str(self.get_item(item_id).get("category"))] += w
        for item_id, w in (negative or {}).items():
            taste[str(self.get_item(item_id).get("category"))] -= w
        skip = [*exclude, *positive, *(negative or {})]
        return _top([FakeResult(i, float(taste[str(it.get("category"))]), ["content"])
                     for i, it in self._candidates(filter, skip)], k)

    def trending(self, k: int = 20, *, filter: Any = None, exclude: Sequence[str] = ()) -> list[FakeResult]:
        counts = Counter(item for evs in self.events.values() for item, _ in evs)
        return _top([FakeResult(i, float(counts[i]), ["popular"]) for i, _ in self._candidates(filter, exclude)], k)

    def recommend(self, user_id: str, k: int = 20, *, filter: Any = None, exclude: Sequence[str] = (),
                  diversity: float | None = None, explain: bool = False,
                  fresh: bool = False, now: Any = None, rules: Any = None) -> list[FakeResult]:
        if diversity is not None and not 0 <= diversity <= 1:
            raise ValidationFailed("diversity is in [0, 1]")
        self.last_rules = rules
        history = self.events.get(user_id)
        fetch = k if rules is None else rules.fetch(k)
        if not history or (rules is not None and rules.source == "popular"):
            out = self.trending(fetch, filter=filter, exclude=exclude)
        else:
            out = self._from_history(history, fetch, filter, exclude, explain)
        return self._ruled(out, k, rules, exclude, seed=len(user_id))

    def buy_again(self, user_id: str, k: int = 20, *, now: Any = None) -> list[FakeResult]:
        counts = Counter(item for item, kind in self.events.get(user_id, []) if kind != "dislike")
        return _top([FakeResult(i, float(n), ["repurchase"]) for i, n in counts.items() if i in self.items], k)

    async def arecommend(self, user_id: str, k: int = 20, *, filter: Any = None, exclude: Sequence[str] = (),
                         diversity: float | None = None, explain: bool = False,
                         fresh: bool = False, now: Any = None,
                         rules: Any = None) -> tuple[list[FakeResult], dict[str, float]]:
        out = self.recommend(user_id, k, filter=filter, exclude=exclude, diversity=diversity, explain=explain,
                             fresh=fresh, now=now, rules=rules)  # in memory: nothing to wait for, nor cached
        self.last_timings = {"candidates": 0.01, "ranking": 0.01, "rules": 0.01}
        return out, dict(self.last_timings)

    def recommend_for_events(self, events: Sequence[Mapping[str, Any]], k: int = 20, *, filter: Any = None,
                             exclude: Sequence[str] = (), diversity: float | None = None,
                             explain: bool = False, rules: Any = None) -> list[FakeResult]:
        self.last_rules = rules
        history = [(str(e["item_id"]), str(e["type"])) for e in events if str(e.get("item_id")) in self.items]
        fetch = k if rules is None else rules.fetch(k)
        out = self._from_history(history, fetch, filter, exclude, explain) if history else \
            self.trending(fetch, filter=filter)
        return self._ruled(out, k, rules, exclude, seed=0)

    def _ruled(self, out: list[FakeResult], k: int, rules: Any, exclude: Sequence[str], *,
               seed: int) -> list[FakeResult]:
        """The served rules (bury, exploration, pins) on a ranked list, as the real service applies them."""
        if rules is None or not rules.reorders:
            return out
        from recsys.serving.rules import apply_rules

        return apply_rules(out, k, rules, category_of=lambda i: self.items.get(i, {}).get("category"),
                           known=lambda i: i in self.items, pool=lambda: sorted(self.items),
                           banned=set(exclude), seed=seed)

    # -- internals ----------------------------------------------------------------------------------------------
    def _from_history(self, history: list[tuple[str, str]], k: int, filter: Any, exclude: Sequence[str],
                      explain: bool) -> list[FakeResult]:
        taste: defaultdict[str, float] = defaultdict(float)
        disliked = set()
        for item, kind in history:
            taste[str(self.items.get(item, {}).get("category"))] += _WEIGHTS.get(kind, 1.0)
            if kind == "dislike":
                disliked.add(item)
        out = []
        for i, it in self._candidates(filter, [*exclude, *disliked]):
            cat = str(it.get("category"))
            expl = {"because": cat, "text": 0.5, "image": 0.5} if explain else None
            out.append(FakeResult(i, float(taste[cat]), ["content"], expl))
        return _top(out, k)

    def _candidates(self, f: Any, exclude: Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
        skip = set(exclude)
        return [(i, it) for i, it in sorted(self.items.items()) if i not in skip and _keep(it, f)]


class FakeCatalogue:
    """The fake's writes (:class:`recsys.catalogue.Catalogue`'s methods), on the :class:`FakeRecommender`'s items
    and events: a write is seen by the next read."""

    def __init__(self, fake: FakeRecommender) -> None:
        self.fake = fake
        self._client_ids: set[tuple[str, str]] = set()
        self._next_event = 1

    def unknown_items(self, item_ids: Sequence[str]) -> list[str]:
        return [i for i in dict.fromkeys(item_ids) if i not in self.fake.items]

    def upsert_items(self, items: Sequence[Mapping[str, Any]], *, index: bool = True) -> list[dict[str, Any]]:
        """``index``: the real one's (whether the live index follows); the fake's reads see every write."""
        out = []
        for it in items:
            item_id = str(it.get("item_id") or "")
            if not item_id:
                out.append({"item_id": None, "status": "error", "error": "missing item_id"})
                continue
            blank: dict[str, Any] = {"item_id": item_id, "title": "", "description": "", "category": None,
                                     "price": None, "in_stock": True, "attributes": {}}
            self.fake.items[item_id] = {**self.fake.items.get(item_id, blank), **dict(it)}  # given fields only
            out.append({"item_id": item_id, "status": "stored"})  # the real Catalogue's word, new or not
        return out

    def delete_item(self, item_id: str) -> None:
        if self.fake.items.pop(item_id, None) is None:
            raise UnknownItem(f"unknown item id {item_id!r}")

    def delete_user(self, user_id: str) -> int:
        if user_id not in self.fake.events:
            raise UnknownUser(f"unknown user id {user_id!r}")
        return len(self.fake.events.pop(user_id))

    def ingest_events(self, events: Sequence[Mapping[str, Any]]) -> list[FakeEventResult]:
        results = []
        for i, e in enumerate(events):
            user, item, cid = str(e.get("user_id")), str(e.get("item_id")), e.get("event_id")
            if item not in self.fake.items:
                results.append(FakeEventResult(i, "error", error=f"unknown item id {item!r}"))
                continue
            if cid is not None and (user, str(cid)) in self._client_ids:
                results.append(FakeEventResult(i, "duplicate"))
                continue
            if cid is not None:
                self._client_ids.add((user, str(cid)))
            if e.get("type") != "impression":  # feedback on a shown list, not interest (as in the real store)
                self.fake.events[user].append((item, str(e.get("type"))))
            results.append(FakeEventResult(i, "stored", self._next_event))
            self._next_event += 1
        return results


def _keep(it: Mapping[str, Any], f: Any) -> bool:
    if f is None:
        return True
    price = it.get("price")
    if f.categories is not None and it.get("category") not in f.categories:
        return False
    if f.price_min is not None and (price is None or price < f.price_min):
        return False
    if f.price_max is not None and (price is None or price > f.price_max):
        return False
    if f.in_stock is not None and bool(it.get("in_stock", True)) != f.in_stock:
        return False
    attrs = it.get("attributes") or {}
    for key, want in (f.attributes or {}).items():
        wants = want if isinstance(want, list | tuple | set | frozenset) else [want]
        if str(attrs.get(key)) not in {str(w) for w in wants}:
            return False
    return True


def _top(results: list[FakeResult], k: int) -> list[FakeResult]:
    return sorted(results, key=lambda r: (-r.score, r.item_id))[:k]
