"""Two API replicas on one PostgreSQL database and one directory of index generations (DESIGN.md section 6): a
generation published through one replica is served by both with no failed request on either, and feedback
acknowledged by one replica changes the next recommendation served by the other."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from recsys.config import Settings
from recsys.store import Store
from recsys.store.importers import run_import
from tests.api.servers import Server, Traffic
from tests.conftest import PG_URL, _pg_database
from tests.e2e_fixture import built_demo

# The session's e2e demo build (shared with the notebook and browser tests) and two servers for the module.
pytestmark = [pytest.mark.postgres, pytest.mark.slow]

NEW_ITEMS = [("replica-new-0", "Saffron silk origami kite"), ("replica-new-1", "Cobalt enamel camping kettle")]


class Replicas:
    def __init__(self, a: Server, b: Server, demo: Path) -> None:
        self.a, self.b, self.demo = a, b, demo

    @property
    def both(self) -> tuple[Server, Server]:
        return self.a, self.b

    def logs(self) -> str:
        return "\n".join(f"--- {s.url} log:\n{s.log.read_text()[-3000:]}" for s in self.both)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    """Both servers on one data directory and one fresh PostgreSQL database holding the e2e demo.

    The artifacts (fitted encoder heads, vector cache, index generation, ranker) come from the session's e2e demo
    build, which the notebook and browser tests share: they speak item ids and content hashes, so they serve the same
    catalogue imported into PostgreSQL, and the module pays for no build of its own.
    """
    if not PG_URL:
        pytest.skip("RECSYS_TEST_POSTGRES_URL not set: the replicas share one PostgreSQL database")
    built, demo = built_demo(tmp_path_factory)
    root = tmp_path_factory.mktemp("replicas")
    home = root / "home"
    shutil.copytree(built, home, symlinks=True, ignore=shutil.ignore_patterns("recsys.db*"))
    for url in _pg_database():  # a throwaway database, dropped after the module
        settings = Settings(home=home, database_url=url)
        store = Store.open(settings)
        try:
            for kind in ("items", "users", "events"):
                run_import(store, kind, demo / f"{kind}.jsonl", settings=settings)
        finally:
            store.dispose()
        env = {"RECSYS_HOME": str(home), "RECSYS_DATABASE_URL": url, "RECSYS_API__AUTH": "false",
               "RECSYS_API__RATE_LIMIT_PER_MINUTE": "0", "RECSYS_API__REFRESH_SECONDS": "0.2"}
        with Server(env, log=root / "a.log") as a, Server(env, log=root / "b.log") as b:
            a.wait_ready("/readyz")
            b.wait_ready("/readyz")
            yield Replicas(a, b, demo)


def _get(server: Server, path: str, **kw: Any) -> Any:
    r = httpx.get(server.url + path, timeout=120, **kw)
    assert r.status_code == 200, f"{server.url}{path}: {r.status_code} {r.text}"
    return r.json()


def _ids(body: Any) -> list[str]:
    return [it["item_id"] for it in body["items"]]


def _until(cond: Callable[[], bool], what: str, replicas: Replicas) -> None:
    for _ in range(1200):  # a liveness bound (minutes on a loaded machine), not a speed check
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}\n{replicas.logs()}")


def test_generation_published_through_one_replica_is_served_by_both(replicas: Replicas) -> None:
    a, b = replicas.both
    before = {_get(s, "/readyz")["index_generation"] for s in replicas.both}
    assert len(before) == 1, f"one directory of generations, yet the replicas serve {before}"
    paths = ["/v1/users/user-{:04d}/recommendations?k=10", "/v1/items/item-00002/similar?k=10", "/v1/trending?k=10",
             "/readyz"]
    # steady traffic with pauses, which leaves the 2 small cores to the build and the switch
    with Traffic([(s, [p.format(n + 1) for p in paths]) for n, s in enumerate(replicas.both)], pause=0.02) as load:
        time.sleep(1.0)  # both under load before the switch
        items = [{"item_id": i, "title": title, "category": "novelty", "price": 12.0} for i, title in NEW_ITEMS]
        r = httpx.post(a.url + "/v1/items", json={"items": items}, timeout=600)
        assert r.status_code == 200, r.text
        assert [x["status"] for x in r.json()["results"]] == ["stored", "stored"]
        # A embeds the new items and publishes a generation before it answers; both pick it up on their next refresh.
        _until(lambda: _get(a, "/readyz")["index_generation"] not in before, "replica A never served its own "
               "publication", replicas)
        new = _get(a, "/readyz")["index_generation"]
        _until(lambda: _get(b, "/readyz")["index_generation"] == new, f"replica B never served {new}", replicas)
        time.sleep(1.0)  # keep both under load on the new generation
    assert not load.failures(), f"{load.failures()}\n{replicas.logs()}"
    for s in replicas.both:
        assert {*before, new} <= load.generations[s.url], f"{s.url} answered from {load.generations[s.url]}"
    first, title = NEW_ITEMS[0]
    for s in replicas.both:  # the new items are indexed on both: similar, text search, and as neighbours
        assert len(_ids(_get(s, f"/v1/items/{first}/similar?k=5"))) == 5
        r = httpx.post(s.url + "/v1/search/text", json={"query": title, "k": 5, "modality": "text"}, timeout=120)
        assert r.status_code == 200 and first in _ids(r.json()), r.text
        assert NEW_ITEMS[1][0] in _ids(_get(s, f"/v1/items/{first}/similar?k=100"))
    # a delete through B is a SQL flag: A stops returning the item at once, before any rebuild
    assert httpx.delete(f"{b.url}/v1/items/{NEW_ITEMS[1][0]}", timeout=60).status_code == 200
    assert NEW_ITEMS[1][0] not in _ids(_get(a, f"/v1/items/{first}/similar?k=100"))


def test_feedback_acknowledged_by_one_replica_changes_the_others_next_recommendation(replicas: Replicas) -> None:
    a, b = replicas.both
    catalogue = [json.loads(line) for line in (replicas.demo / "items.jsonl").read_text().splitlines()]
    category = {it["item_id"]: it["category"] for it in catalogue}
    cat = next(c for c, n in Counter(category.values()).most_common() if n >= 6)
    liked = [i for i, c in category.items() if c == cat][:4]
    user = "replica-user-1"

    def share(server: Server) -> float:
        items = _ids(_get(server, f"/v1/users/{user}/recommendations?k=5"))
        assert items
        return sum(category.get(i) == cat for i in items) / len(items)

    before = share(b)
    events = [{"user_id": user, "item_id": i, "type": "like", "event_id": f"replica-like-{i}"} for i in liked]
    r = httpx.post(a.url + "/v1/events", json={"events": events}, timeout=120)
    assert r.status_code == 200 and r.json()["stored"] == 4, r.text
    after = share(b)  # right after A's acknowledgement, no refresh interval in between
    assert after > before and after >= 0.6, (before, after)


def test_publications_through_both_replicas_at_once_converge(replicas: Replicas) -> None:
    """Both replicas embed and publish at the same moment: the shared build lock orders them, no request fails,
    and both end on one generation that holds both items."""
    new = {"both-a": (replicas.a, "Amber glass chess set"), "both-b": (replicas.b, "Violet felt bowler hat")}
    answers: dict[str, httpx.Response] = {}

    def publish(item_id: str) -> None:
        server, title = new[item_id]
        item = {"item_id": item_id, "title": title, "category": "novelty", "price": 30.0}
        answers[item_id] = httpx.post(server.url + "/v1/items", json={"items": [item]}, timeout=600)

    threads = [threading.Thread(target=publish, args=(i,)) for i in new]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for item_id, r in answers.items():
        assert r.status_code == 200 and r.json()["results"][0]["status"] == "stored", f"{item_id}: {r.text}"

    def converged() -> bool:
        gens = {_get(s, "/readyz")["index_generation"] for s in replicas.both}
        return len(gens) == 1 and all(httpx.get(f"{s.url}/v1/items/{i}/similar?k=3", timeout=120).status_code == 200
                                      for s in replicas.both for i in new)

    _until(converged, "the replicas did not converge on one generation holding both new items", replicas)
