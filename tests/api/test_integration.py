"""The API over the real Recommender on the tiny demo: every endpoint, live feedback, fuzzing, and an index build
under load with zero failed requests."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from recsys.api import create_app
from recsys.config import Settings
from recsys.demo import tiny_demo
from recsys.service import Recommender
from recsys.store import Store
from recsys.store.importers import run_import
from tests.api.servers import Server, Traffic
from tests.conftest import run_async

pytestmark = pytest.mark.slow  # one tiny-demo build (encoder fit, embedding, index, ranker) for the module


def _settings(home: Path) -> Settings:
    s = Settings(home=home)
    s.api = s.api.model_copy(update={"auth": False, "rate_limit_per_minute": 0, "compute_threads": 0})
    return s


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(home, demo data dir): the tiny demo imported and built once for the module."""
    root = tmp_path_factory.mktemp("api-demo")
    demo = tiny_demo(root)
    settings = _settings(root / "home")
    store = Store.open(settings)
    for kind in ("items", "users", "events"):
        run_import(store, kind, demo / f"{kind}.jsonl", settings=settings)
    Recommender(settings, store).jobs.build()
    store.dispose()
    return settings.home, demo


@pytest.fixture
def home(built: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the built home (tests write events and items)."""
    dst = tmp_path / "home"
    shutil.copytree(built[0], dst)
    return dst


@pytest.fixture
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(home)), raise_server_exceptions=False) as c:
        yield c


def _items(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]


def _catalogue(demo: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (demo / "items.jsonl").read_text().splitlines()]


def test_endpoints_on_the_real_service(client: TestClient, built: tuple[Path, Path]) -> None:
    demo = built[1]
    ready = client.get("/readyz").json()
    assert ready["ready"] and ready["index_generation"]
    known = json.loads((demo / "events.jsonl").read_text().splitlines()[0])["user_id"]
    r = client.get(f"/v1/users/{known}/recommendations?k=5&explain=true&debug=true").json()
    assert len(r["items"]) == 5 and r["meta"]["index_generation"] == ready["index_generation"]
    assert {"service_total"} <= set(r["debug"]["timings_ms"])
    cold = _items(client.get("/v1/users/nobody-at-all/recommendations?k=5"))
    assert cold and all({"popular", "trending"} & set(it["sources"]) for it in cold)
    cat = _catalogue(demo)[0]["category"]
    for it in _items(client.get(f"/v1/users/{known}/recommendations", params={"k": 5, "category": cat})):
        assert client.get(f"/v1/items/{it['item_id']}").json()["category"] == cat
    first = _catalogue(demo)[0]["item_id"]
    sim = _items(client.get(f"/v1/items/{first}/similar?k=5"))
    assert len(sim) == 5 and first not in [it["item_id"] for it in sim]
    assert _items(client.post("/v1/search/text", json={"query": cat, "k": 3, "modality": "text"}))
    img = (demo / _catalogue(demo)[0]["image"]).read_bytes()
    assert _items(client.post("/v1/search/image", files={"image": ("q.png", img, "image/png")}, data={"k": "3"}))
    assert _items(client.post("/v1/more-like-these", json={"positive": {first: 1.0}, "k": 3}))
    assert _items(client.get("/v1/trending?k=3"))
    session = client.post("/v1/sessions/recommendations", json={
        "events": [{"item_id": first, "type": "like"}, {"item_id": "no-such-item", "type": "view"}], "k": 3})
    assert _items(session) and session.json()["meta"]["unknown_items"] == ["no-such-item"]
    bad = client.post("/v1/search/image", files={"image": ("q.png", b"\x89PNG\r\n\x1a\nbroken", "image/png")})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "bad_media"
    assert client.get("/v1/items/no-such-item/similar").json()["error"]["code"] == "unknown_item"


def test_items_crud_on_the_real_service(client: TestClient, home: Path) -> None:
    r = client.put("/v1/items/new-1", json={"title": "Teal linen scarf", "category": "scarf", "price": 20})
    assert r.status_code == 200, r.text
    assert client.get("/v1/items/new-1").json()["title"] == "Teal linen scarf"
    r = client.post("/v1/items", json={"items": [{"item_id": "new-2", "title": "x"}, {"item_id": "new-3"}]})
    assert r.status_code == 200 and len(r.json()["results"]) == 2
    # a bulk update of one field keeps the others; PUT replaces the whole item
    r = client.post("/v1/items", json={"items": [{"item_id": "new-1", "price": 25}]})
    assert r.json()["results"][0]["status"] == "stored", r.text
    got = client.get("/v1/items/new-1").json()
    assert (got["title"], got["category"], got["price"]) == ("Teal linen scarf", "scarf", 25)
    client.put("/v1/items/new-1", json={"title": "Teal scarf"})
    assert client.get("/v1/items/new-1").json()["category"] is None
    # an image that cannot be used: the item is stored, and the answer says why it has no picture
    (home / "notes.png").write_text("not a picture")
    r = client.post("/v1/items", json={"items": [{"item_id": "new-4", "title": "a", "image": str(home / "gone.png")},
                                                 {"item_id": "new-5", "title": "b", "image": str(home / "notes.png")},
                                                 {"item_id": "new-6", "title": "c"}]}).json()["results"]
    assert [x["status"] for x in r] == ["stored"] * 3, r
    assert "not found" in r[0]["warning"] and "image not used" in r[1]["warning"] and "warning" not in r[2]
    assert client.delete("/v1/items/new-2").status_code == 200
    sim = [it["item_id"] for it in _items(client.get("/v1/items/item-00001/similar?k=60"))]
    assert "new-2" not in sim
    for gone in (client.get("/v1/items/new-2"), client.get("/v1/items/new-2/similar")):  # gone for shoppers too
        assert gone.status_code == 404 and "was deleted; a PUT" in gone.json()["error"]["message"], gone.text
    assert client.put("/v1/items/new-2", json={"title": "back"}).status_code == 200  # and a PUT restores it
    assert client.get("/v1/items/new-2").json()["title"] == "back"


def test_live_feedback_changes_the_next_recommendation(client: TestClient, built: tuple[Path, Path]) -> None:
    catalogue = _catalogue(built[1])
    by_cat = Counter(it["category"] for it in catalogue)
    cat = next(c for c, n in by_cat.most_common() if n >= 6)
    liked = [it["item_id"] for it in catalogue if it["category"] == cat][:4]
    user = "fresh-user-1"

    def share(items: list[dict[str, Any]]) -> float:
        cats = {it["item_id"]: it["category"] for it in catalogue}
        return sum(cats.get(it["item_id"]) == cat for it in items) / max(1, len(items))

    before = share(_items(client.get(f"/v1/users/{user}/recommendations?k=5")))
    events = [{"user_id": user, "item_id": i, "type": "like", "event_id": f"fb-{i}"} for i in liked]
    assert client.post("/v1/events", json={"events": events}).json()["stored"] == 4
    after_items = _items(client.get(f"/v1/users/{user}/recommendations?k=5"))
    assert share(after_items) > before and share(after_items) >= 0.6


def test_buy_again_holds_the_repeats_the_personal_list_caps(client: TestClient, built: tuple[Path, Path]) -> None:
    catalogue = _catalogue(built[1])
    user = "heavy-buyer-1"
    bought = [it["item_id"] for it in catalogue[:10]]
    events = [{"user_id": user, "item_id": i, "type": "purchase", "event_id": f"hb-{i}-{n}"}
              for n in range(3) for i in bought]
    assert client.post("/v1/events", json={"events": events}).json()["stored"] == 30
    main = [it["item_id"] for it in _items(client.get(f"/v1/users/{user}/recommendations?k=12"))]
    assert len(main) == 12 and sum(i in bought for i in main) <= 4  # ranking.max_repeat_share = 0.4
    buried = next(i for i in main if i not in bought)  # a bury fetches 2k to thin: the cap stays a share of k
    thinned = [it["item_id"] for it in _items(client.get(f"/v1/users/{user}/recommendations?k=12&bury={buried}"))]
    assert len(thinned) == 12 and buried not in thinned and sum(i in bought for i in thinned) <= 4, thinned
    again = [it["item_id"] for it in _items(client.get(f"/v1/users/{user}/buy-again?k=5"))]
    assert len(again) == 5 and set(again) <= set(bought)
    assert _items(client.get("/v1/users/nobody-at-all/buy-again")) == []
    liked = next(i for i in (it["item_id"] for it in catalogue[20:]) if i not in main)
    ev = {"user_id": user, "item_id": liked, "type": "like", "event_id": "hb-like"}
    assert client.post("/v1/events", json={"events": [ev]}).json()["stored"] == 1
    assert liked not in [it["item_id"] for it in _items(client.get(f"/v1/users/{user}/recommendations?k=12"))]
    # buy again names what the user bought "repurchase" and an item only liked "seen", as the personal list does
    tags = {it["item_id"]: it["sources"] for it in _items(client.get(f"/v1/users/{user}/buy-again?k=11"))}
    assert tags[liked] == ["seen"] and all(tags[i] == ["repurchase"] for i in bought if i in tags), tags


def test_results_carry_what_a_client_shows(client: TestClient, built: tuple[Path, Path], home: Path) -> None:
    cat = {it["item_id"]: it for it in _catalogue(built[1])}
    user = json.loads((built[1] / "events.jsonl").read_text().splitlines()[0])["user_id"]
    lists = [_items(client.get(f"/v1/users/{user}/recommendations?k=5")),
             _items(client.get(f"/v1/items/{next(iter(cat))}/similar?k=3")),
             _items(client.get("/v1/search/text", params={"q": "red", "k": 3})),
             _items(client.get(f"/v1/users/{user}/recommendations?k=5"))]  # the cached list keeps them
    for items in lists:
        for it in items:
            assert it["item"]["title"] == cat[it["item_id"]]["title"]
            assert it["item"]["image_url"] == f"/media/{it['item_id']}"
    lean = _settings(home)
    lean.api = lean.api.model_copy(update={"result_details": False})
    with TestClient(create_app(lean), raise_server_exceptions=False) as c:
        assert "item" not in _items(c.get(f"/v1/users/{user}/recommendations?k=3"))[0]


def test_cached_lists_never_outlive_a_deletion_or_an_event(client: TestClient, built: tuple[Path, Path]) -> None:
    user = json.loads((built[1] / "events.jsonl").read_text().splitlines()[0])["user_id"]
    first = [it["item_id"] for it in _items(client.get(f"/v1/users/{user}/recommendations?k=8"))]
    again = client.get(f"/v1/users/{user}/recommendations?k=8&debug=true").json()
    assert [it["item_id"] for it in again["items"]] == first and again["debug"]["timings_ms"].get("cached") == 1.0
    assert client.delete(f"/v1/items/{first[0]}").status_code == 200
    after = [it["item_id"] for it in _items(client.get(f"/v1/users/{user}/recommendations?k=8"))]
    assert first[0] not in after and len(after) == 8
    ev = {"user_id": user, "item_id": after[0], "type": "dislike", "event_id": "cache-dislike-1"}
    assert client.post("/v1/events", json={"events": [ev]}).json()["stored"] == 1
    later = client.get(f"/v1/users/{user}/recommendations?k=8&debug=true").json()
    assert "cached" not in later["debug"]["timings_ms"] and later["items"][0]["item_id"] != after[0]


def test_cached_lists_show_the_items_current_details(client: TestClient, built: tuple[Path, Path]) -> None:
    """A price feed or a renamed item on a running server (no new generation) reaches cached lists at once."""
    from sqlalchemy import update

    from recsys.store.tables import Item

    user = json.loads((built[1] / "events.jsonl").read_text().splitlines()[1])["user_id"]
    url = f"/v1/users/{user}/recommendations?k=5"
    item = _items(client.get(url))[0]["item_id"]
    assert client.get(url + "&debug=true").json()["debug"]["timings_ms"].get("cached") == 1.0
    with client.app.state.runtime.recommender.store.session() as s:  # type: ignore[attr-defined]
        s.execute(update(Item).where(Item.external_id == item).values(title="Renamed", price=1.5))
    shown = next(it["item"] for it in _items(client.get(url)) if it["item_id"] == item)
    assert shown["title"] == "Renamed" and shown["price"] == 1.5


def test_feedback_loop_on_the_real_service(client: TestClient, built: tuple[Path, Path]) -> None:
    """Every demo user's page 2 shares no item with page 1; a cached list still gets a fresh id; impressions change
    neither the list nor its cache key; events naming a list are attributed in the report, exactly."""
    users = sorted({json.loads(line)["user_id"] for line in (built[1] / "events.jsonl").read_text().splitlines()})
    for user in [*users, "cold-user-1"]:
        one = client.get(f"/v1/users/{user}/recommendations?k=8").json()
        two = client.get(f"/v1/users/{user}/recommendations", params={"k": 8, "cursor": one["meta"]["next"]})
        shown = {it["item_id"] for it in one["items"]}
        assert len(shown) == 8 and _items(two) and not shown & {it["item_id"] for it in _items(two)}, user
    user = users[0]
    first = client.get(f"/v1/users/{user}/recommendations?k=6").json()
    again = client.get(f"/v1/users/{user}/recommendations?k=6&debug=true").json()
    assert again["debug"]["timings_ms"].get("cached") == 1.0 and again["items"] == first["items"]
    rid = first["meta"]["recommendation_id"]
    assert again["meta"]["recommendation_id"] != rid
    ids = [it["item_id"] for it in first["items"]]
    events = [{"user_id": user, "item_id": i, "type": "impression", "recommendation_id": rid, "position": p}
              for p, i in enumerate(ids)]
    events += [{"user_id": user, "item_id": ids[2], "type": "click", "recommendation_id": rid, "position": 2},
               {"user_id": user, "item_id": ids[2], "type": "add_to_cart", "recommendation_id": rid, "position": 2}]
    assert client.post("/v1/events", json={"events": events[:6]}).json()["stored"] == 6
    after = client.get(f"/v1/users/{user}/recommendations?k=6&debug=true").json()
    assert after["debug"]["timings_ms"].get("cached") == 1.0 and after["items"] == first["items"]
    assert client.post("/v1/events", json={"events": events[6:]}).json()["stored"] == 2
    shown = client.get(f"/v1/users/{user}/recommendations", params={"k": 6, "exclude_shown_hours": 1})
    assert not {it["item_id"] for it in _items(shown)} & set(ids)
    client.app.state.served.flush()  # type: ignore[attr-defined]
    report = client.get("/v1/feedback/report").json()
    group = next(g for g in report["groups"] if g["source"] == "recommend")
    assert (group["impressions"], group["clicks"], group["add_to_cart"], group["purchases"]) == (6, 1, 1, 0)
    assert group["lists"] == 2 * (len(users) + 1) + 4
    assert group["ranker_version"] == first["meta"]["ranker_version"]


def test_fuzz_the_real_service(home: Path) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    app = create_app(_settings(home))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures = []
    with TestClient(app, raise_server_exceptions=False):
        for op in schema.get_all_operations():
            operation = op.ok()

            @given(case=operation.as_strategy())
            @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
            def check(case: Any) -> None:
                case.call_and_validate(checks=[not_a_server_error])

            try:
                check()
            except Exception as e:  # collect all, report together
                failures.append(f"{operation.label}: {str(e)[:500]}")
    assert not failures, "\n".join(failures)


def test_index_build_under_load_fails_no_request(home: Path, tmp_path: Path) -> None:
    env = {"RECSYS_HOME": str(home), "RECSYS_API__AUTH": "false", "RECSYS_API__RATE_LIMIT_PER_MINUTE": "0",
           "RECSYS_DATABASE_URL": "", "RECSYS_API__REFRESH_SECONDS": "0.2"}
    with Server(env, log=tmp_path / "server.log") as server:
        server.wait_ready("/readyz")
        before = httpx.get(server.url + "/readyz").json()["index_generation"]
        paths = ["/v1/users/user-{:04d}/recommendations?k=10", "/v1/items/item-00002/similar?k=10",
                 "/v1/search/text?q=red&k=10", "/v1/trending?k=10"]
        with Traffic([(server, [p.format(n + 1) for p in paths]) for n in range(4)]) as load:
            settings = _settings(home)
            store = Store.open(settings)
            new = tmp_path / "late.jsonl"
            new.write_text("".join(json.dumps({"item_id": f"late-{i}", "title": f"Late arrival {i}", "category": "hat",
                                               "price": 9.0}) + "\n" for i in range(5)))
            run_import(store, "items", new, settings=settings)  # straight into the store: no delta from the API
            Recommender(settings, store).jobs.build()  # a new generation, built beside the serving process
            store.dispose()
            for _ in range(600):
                now = httpx.get(server.url + "/readyz").json()["index_generation"]
                if now != before:
                    break
                time.sleep(0.1)
            time.sleep(1.0)  # keep loading the new generation for a moment
        assert now != before, "the server did not pick up the new generation"
        assert not load.failures(), f"{load.outcomes}\nserver log:\n{server.log.read_text()[-4000:]}"
        assert now in load.generations[server.url]  # requests were answered from the new generation too


def test_items_upserted_under_load_fail_no_request(home: Path, tmp_path: Path) -> None:
    """PUT/POST items publish a delta generation from inside the serving process while requests run."""
    env = {"RECSYS_HOME": str(home), "RECSYS_API__AUTH": "false", "RECSYS_API__RATE_LIMIT_PER_MINUTE": "0",
           "RECSYS_DATABASE_URL": "", "RECSYS_API__REFRESH_SECONDS": "0.2"}
    with Server(env, log=tmp_path / "server.log") as server:
        server.wait_ready("/readyz")
        paths = ["/v1/users/user-{:04d}/recommendations?k=10", "/v1/items/item-00002/similar?k=10"]
        with Traffic([(server, [p.format(n + 1) for p in paths]) for n in range(4)]) as load, \
                httpx.Client(base_url=server.url, timeout=120) as http:
            for round_ in range(3):
                new = [{"item_id": f"live-{round_}-{i}", "title": f"Live arrival {i}", "category": "hat",
                        "price": 9.0} for i in range(3)]
                assert http.post("/v1/items", json={"items": new}).status_code == 200
            time.sleep(1.0)
        assert not load.failures(), f"{load.outcomes}\nserver log:\n{server.log.read_text()[-4000:]}"


def test_serve_with_worker_processes(home: Path, tmp_path: Path) -> None:
    """`recsys serve --workers 2`: two server processes on one port, each serving from the same store."""
    recsys = str(Path(sys.executable).parent / "recsys")
    env = {"RECSYS_HOME": str(home), "RECSYS_DATABASE_URL": "", "RECSYS_API__RATE_LIMIT_PER_MINUTE": "0"}
    args = [recsys, "serve", "--workers", "2", "--no-auth", "--no-banner", "--host", "127.0.0.1", "--port", "{port}"]
    with Server(env, log=tmp_path / "server.log", args=args) as server:
        server.wait_ready("/readyz")
        children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
        workers = [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(workers) == 2, server.log.read_text()[-3000:]  # besides multiprocessing's resource tracker
        with httpx.Client(base_url=server.url, timeout=120) as http:
            codes = Counter(http.get(f"/v1/users/user-{n % 5 + 1:04d}/recommendations?k=5").status_code
                            for n in range(40))
            assert codes == Counter({200: 40}), server.log.read_text()[-3000:]
            assert http.post("/v1/events", json={"events": [{"user_id": "user-0001", "item_id": "item-00002",
                                                             "type": "like"}]}).status_code == 200


@pytest.mark.parametrize("threads", [1, 2])
def test_async_recommendations_rank_at_most_serving_threads_at_once(home: Path, threads: int,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(home)
    settings.ranking = settings.ranking.model_copy(update={"serving_threads": threads})
    rec = Recommender(settings)
    running, peak = 0, 0
    lock = threading.Lock()
    rank = Recommender._rank_records

    def counted(self: Recommender, *a: Any, **kw: Any) -> Any:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)  # long enough for the other requests to pile up
        try:
            return rank(self, *a, **kw)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(Recommender, "_rank_records", counted)

    async def main() -> tuple[list[Any], list[Any]]:
        users = [f"user-{n:04d}" for n in range(1, 7)]
        first = await asyncio.gather(*(rec.arecommend(u, 5) for u in users))
        again = await asyncio.gather(*(rec.arecommend(u, 5) for u in users))
        return first, again

    rec.refresh()
    first, again = run_async(main())
    assert peak == threads
    for (a, ta), (b, tb) in zip(first, again, strict=True):
        assert "cached" not in ta and tb["cached"] == 1.0  # the second round is answered from the cache
        assert [x.item_id for x in a] == [x.item_id for x in b]
    assert [x.item_id for x in first[0][0]] == [x.item_id for x in rec.recommend("user-0001", 5)]
    rec.store.dispose()
