"""Demo users with latent tastes, and the timestamped sessions their tastes produce.

A user has a colour palette, liked patterns, a price tier and a few interests (a category plus colours from the
palette). Interest weights drift linearly over the 90 days (one may fade while another emerges), so recent events
predict the next ones better than old ones. Item choice mixes taste (exp of an affinity) with Zipf popularity; views
lead to carts and purchases with a probability that rises with affinity; items against the user's taste are sometimes
disliked; a few purchases get a rating.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from recsys.demo.catalog import CATEGORY_BY_NAME, COLOURS, PATTERNS, ItemSpec

START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 90
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
REGIONS = ("north", "south", "east", "west", "central")
#: age band -> departments it leans towards (a weak, visible correlation between user attributes and taste)
AGE_LEANING = {"18-24": "footwear", "25-34": "apparel", "35-44": "accessories", "45-54": "home", "55+": "home"}


@dataclass(frozen=True)
class Interest:
    category: str
    colours: tuple[str, ...]
    weight_start: float
    weight_end: float

    def weight(self, frac: float) -> float:
        return self.weight_start + (self.weight_end - self.weight_start) * frac


@dataclass
class UserSpec:
    user_id: str
    age_band: str
    region: str
    palette: tuple[str, ...]
    patterns: tuple[str, ...]
    tier: int
    aversion: str  # a colour the user dislikes
    interests: list[Interest]
    first_day: float
    n_sessions: int

    def record(self) -> dict[str, object]:
        return {"user_id": self.user_id, "age_band": self.age_band, "region": self.region}

    def truth(self) -> dict[str, object]:
        return {"palette": list(self.palette), "patterns": list(self.patterns), "tier": self.tier,
                "aversion": self.aversion,
                "interests": [{"category": i.category, "colours": list(i.colours), "weight_start": i.weight_start,
                               "weight_end": i.weight_end} for i in self.interests]}

    def affinity(self, item: ItemSpec) -> float:
        """How well an item fits this user's taste, in [0, 4]: best interest match + pattern + price tier."""
        best = 0.0
        for it in self.interests:
            cat = 1.0 if item.category == it.category else (
                0.3 if CATEGORY_BY_NAME[item.category].department == CATEGORY_BY_NAME[it.category].department else 0.0)
            col = 1.0 if item.colour in it.colours else (0.4 if item.colour in self.palette else 0.0)
            best = max(best, cat * (1.0 + 1.5 * col))
        pat = 0.9 if item.pattern in self.patterns else 0.0
        tier = 0.6 * (1 - abs(item.tier - self.tier) / 2)
        return best + pat + tier


def make_users(n_users: int, items: list[ItemSpec], seed: int) -> list[UserSpec]:
    rng = random.Random(f"recsys-demo-users-{seed}")
    cats = sorted({it.category for it in items})
    colours = list(COLOURS)
    users = []
    for u in range(n_users):
        age = rng.choice(AGE_BANDS)
        palette = tuple(rng.sample(colours, k=rng.choice((2, 3, 3))))
        patterns = tuple(rng.sample(PATTERNS, k=rng.choice((1, 2))))
        aversion = rng.choice([c for c in colours if c not in palette])
        leaning = [c for c in cats if CATEGORY_BY_NAME[c].department == AGE_LEANING[age]] or cats
        n_int = rng.choice((2, 2, 3, 3, 4))
        chosen: list[str] = []
        while len(chosen) < min(n_int, len(cats)):
            c = rng.choice(leaning if rng.random() < 0.35 else cats)
            if c not in chosen:
                chosen.append(c)
        interests = [Interest(c, tuple(rng.sample(palette, k=rng.choice((1, 2)))), 1.0, 1.0) for c in chosen]
        if len(interests) > 1 and rng.random() < 0.5:  # taste drift: one interest fades, another emerges
            old, new = interests[0], interests[-1]
            interests[0] = Interest(old.category, old.colours, 1.0, 0.15)
            interests[-1] = Interest(new.category, new.colours, 0.1, 1.4)
        first_day = 0.0 if rng.random() < 0.7 else rng.uniform(0, DAYS * 0.6)
        n_sessions = max(2, min(40, round(rng.lognormvariate(math.log(6), 0.6))))
        users.append(UserSpec(f"user-{u + 1:04d}", age, rng.choice(REGIONS), palette, patterns, rng.randint(0, 2),
                              aversion, interests, first_day, n_sessions))
    return users


class _Sampler:
    """Weighted draws by bisection over cumulative weights (deterministic, stable across Python versions)."""

    def __init__(self, items: list[ItemSpec], weights: list[float]) -> None:
        self.items = items
        self.cum = list(itertools.accumulate(weights))

    def draw(self, rng: random.Random) -> ItemSpec:
        x = rng.random() * self.cum[-1]
        return self.items[min(bisect.bisect_right(self.cum, x), len(self.items) - 1)]


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _session_start(rng: random.Random, user: UserSpec) -> float:
    """A day offset in [first_day, DAYS) with an evening-heavy hour of day."""
    day = math.floor(rng.uniform(user.first_day, DAYS))
    hour = rng.choices(range(24), weights=[1, 1, 1, 1, 1, 1, 2, 3, 4, 4, 4, 5, 6, 5, 4, 4, 5, 6, 8, 10, 11, 10,
                                           7, 3])[0]
    return day + (hour + rng.random()) / 24


def simulate(users: list[UserSpec], items: list[ItemSpec], seed: int, event_tag: str = "") -> list[dict[str, object]]:
    """All events of all users, sorted by (timestamp, user_id, event_id); see the module docstring. ``event_tag`` goes
    into every event id (a demo mixed into a store holding another one: its ids must not be the earlier ones')."""
    rng = random.Random(f"recsys-demo-events-{seed}")
    explore = _Sampler(items, [it.popularity for it in items])
    by_cat: dict[str, list[ItemSpec]] = {}
    for it in items:
        by_cat.setdefault(it.category, []).append(it)
    events: list[dict[str, object]] = []
    for user in users:
        samplers = []
        for interest in user.interests:
            pool = by_cat.get(interest.category, items)
            samplers.append(_Sampler(pool, [it.popularity ** 0.35 * math.exp(1.3 * user.affinity(it))
                                            for it in pool]))
        raw: list[tuple[float, int, str, ItemSpec, float | None]] = []
        starts = sorted(_session_start(rng, user) for _ in range(user.n_sessions))
        for s_i, t0 in enumerate(starts):
            frac = t0 / DAYS
            weights = [max(i.weight(frac), 0.0) for i in user.interests]
            k = rng.choices(range(len(weights)), weights=weights)[0]
            t = t0 * 86400
            cart: list[ItemSpec] = []
            for _ in range(rng.choice((2, 3, 4, 4, 5, 6, 8, 10))):
                item = explore.draw(rng) if rng.random() < 0.18 else samplers[k].draw(rng)
                t += rng.uniform(15, 240)
                raw.append((t, s_i, "view", item, None))
                aff = user.affinity(item)
                if item.colour == user.aversion or aff < 0.6:
                    if rng.random() < (0.35 if item.colour == user.aversion else 0.08):
                        raw.append((t + rng.uniform(2, 20), s_i, "dislike", item, None))
                    continue
                if rng.random() < 0.02 + 0.3 * (aff / 4) ** 2:
                    t += rng.uniform(5, 60)
                    raw.append((t, s_i, "add_to_cart", item, None))
                    cart.append(item)
            for item in cart:
                if rng.random() < 0.3 + 0.35 * user.affinity(item) / 4:
                    t += rng.uniform(5, 40)
                    raw.append((t, s_i, "purchase", item, None))
                    if rng.random() < 0.12:
                        stars = float(max(1, min(5, round(1.2 + user.affinity(item) + rng.gauss(0, 0.7)))))
                        rt = t + rng.uniform(1, 5) * 86400
                        raw.append((rt if rt < DAYS * 86400 else t + 90, s_i, "rating", item, stars))
        raw.sort(key=lambda r: (r[0], r[1]))
        for n, (ts, _s, kind, item, value) in enumerate(raw, start=1):
            ev: dict[str, object] = {"event_id": f"{user.user_id}-{event_tag}e{n:05d}", "user_id": user.user_id,
                                     "item_id": item.item_id, "type": kind,
                                     "timestamp": _iso(START + timedelta(seconds=round(ts)))}
            if value is not None:
                ev["value"] = value
            events.append(ev)
    events.sort(key=lambda e: (str(e["timestamp"]), str(e["user_id"]), str(e["event_id"])))
    return events
