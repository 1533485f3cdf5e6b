"""Feed cursors are signed: a made-up one (or a real one with its offset changed) is refused at once, without
reading or waiting for its feed; a real one pages on any worker sharing the data directory; the feed is looked
for on the event loop. Served lists the database finally refused are counted in /metrics."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient

from recsys.errors import StoreUnavailable

Client = Callable[..., TestClient]


def _ids(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    return [it["item_id"] for it in r.json()["items"]]


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_a_made_up_cursor_is_refused_before_any_feed_read(client: TestClient) -> None:
    served = client.app.state.served  # type: ignore[attr-defined]
    looked: list[str] = []

    async def afeed_items(feed_id: str, shown: int = 0) -> Any:
        looked.append(feed_id)
        raise AssertionError("a made-up cursor's feed was looked for")

    first = client.get("/v1/users/u1/recommendations", params={"k": 3}).json()["meta"]
    feed, offset, mac = base64.urlsafe_b64decode(first["next"] + "==").decode().split(":")
    served.afeed_items = afeed_items
    # the unsigned form releases before 2026-12-06 gave: refused (anyone can make one up), saying why
    r = client.get("/v1/users/u1/recommendations", params={"k": 3, "cursor": _b64(f"{os.urandom(16).hex()}:5")})
    assert r.status_code == 422 and "from a recsys release before this server's upgrade" in r.json()["detail"]
    forged = [_b64(f"{os.urandom(16).hex()}:5:{mac}"),  # another feed under a real signature
              _b64(f"{feed}:1000000:{mac}"),  # a real feed, its offset changed
              _b64(f"{feed}:{offset}:{'0' * 32}")]
    for cursor in forged:
        r = client.get("/v1/users/u1/recommendations", params={"k": 3, "cursor": cursor})
        assert r.status_code == 422 and "not a cursor this API gave" in r.json()["detail"], r.text
    assert looked == []


def test_a_real_cursor_pages_on_another_worker_and_is_looked_for_on_the_loop(make_client: Client) -> None:
    a, b = make_client(), make_client()  # two workers over one data directory and one store
    for c in (a, b):
        def no_thread_wait(*_: Any, **__: Any) -> Any:
            raise AssertionError("the feed was looked for in a worker thread")

        c.app.state.served.feed_items = no_thread_wait  # type: ignore[attr-defined]
    one = a.get("/v1/users/u2/recommendations", params={"k": 4})
    a.app.state.served.flush()  # type: ignore[attr-defined]
    two = b.get("/v1/users/u2/recommendations", params={"k": 4, "cursor": one.json()["meta"]["next"]})
    assert not set(_ids(two)) & set(_ids(one)) and _ids(two)
    s1 = b.post("/v1/sessions/recommendations", json={"events": [{"item_id": "s1", "type": "like"}], "k": 3})
    b.app.state.served.flush()  # type: ignore[attr-defined]
    s2 = a.post("/v1/sessions/recommendations", json={"events": [{"item_id": "s1", "type": "like"}], "k": 3,
                                                      "cursor": s1.json()["meta"]["next"]})
    assert not set(_ids(s2)) & set(_ids(s1))


class _Down:
    @contextmanager
    def session(self) -> Iterator[Any]:
        raise StoreUnavailable("database is unreachable")
        yield


def test_lists_the_database_never_took_are_counted_as_dropped(client: TestClient) -> None:
    served = client.app.state.served  # type: ignore[attr-defined]
    served.store, served.retries = _Down(), 1
    served.backoff_s = 0.0
    assert client.get("/v1/users/u3/recommendations?k=2").status_code == 200
    assert served.flush(timeout_s=30) and served.failed == 1
    assert "recsys_served_lists_dropped_total 1.0" in client.get("/metrics").text


def test_a_cursor_sent_again_gets_its_page_again_not_the_page_after(client: TestClient) -> None:
    """A retried or refreshed page leaves out only the pages before its cursor: not the copy it replaces (which gave
    a page 2 sharing nothing with the first page 2, both recorded at the same offset)."""
    served = client.app.state.served  # type: ignore[attr-defined]
    one = client.get("/v1/users/u1/recommendations", params={"k": 3})
    cursor = one.json()["meta"]["next"]
    two = client.get("/v1/users/u1/recommendations", params={"k": 3, "cursor": cursor})
    served.flush()
    again = client.get("/v1/users/u1/recommendations", params={"k": 3, "cursor": cursor})
    assert _ids(again) == _ids(two) and not set(_ids(two)) & set(_ids(one))
    three = client.get("/v1/users/u1/recommendations", params={"k": 3, "cursor": again.json()["meta"]["next"]})
    assert _ids(three) and not set(_ids(three)) & (set(_ids(one)) | set(_ids(two)))


def test_a_pin_counts_its_position_over_the_whole_feed(client: TestClient) -> None:
    """A pin past the first page's k lands on the page that reaches it (it used to show on no page at all); a
    pin of an earlier page is not pinned again; sessions' feeds alike."""
    served = client.app.state.served  # type: ignore[attr-defined]
    plain = _ids(client.get("/v1/users/u1/recommendations", params={"k": 3}))
    outsider = next(i for i in client.app.state.recommender.items if i not in plain)  # type: ignore[attr-defined]
    params = {"k": 3, "pin": f"{outsider}=5"}
    one = client.get("/v1/users/u1/recommendations", params=params)
    assert outsider not in _ids(one)
    served.flush()
    two = client.get("/v1/users/u1/recommendations", params={**params, "cursor": one.json()["meta"]["next"]})
    assert _ids(two)[1] == outsider and "pinned" in two.json()["items"][1]["sources"]
    served.flush()
    three = client.get("/v1/users/u1/recommendations", params={**params, "cursor": two.json()["meta"]["next"]})
    assert outsider not in _ids(three)

    body: dict[str, Any] = {"events": [{"item_id": "s1", "type": "like"}], "k": 2}
    first = _ids(client.post("/v1/sessions/recommendations", json=body))
    other = next(i for i in client.app.state.recommender.items  # type: ignore[attr-defined]
                 if i not in first and i != "s1")
    body["pins"] = {other: 3}
    s1 = client.post("/v1/sessions/recommendations", json=body)
    assert other not in _ids(s1)
    served.flush()
    s2 = client.post("/v1/sessions/recommendations", json={**body, "cursor": s1.json()["meta"]["next"]})
    assert _ids(s2)[0] == other and "pinned" in s2.json()["items"][0]["sources"]


def test_a_cursor_from_a_server_with_another_data_directory_says_so(make_client: Client, fake: Any,
                                                                   tmp_path: Any) -> None:
    from recsys.api import create_app
    from tests.api.conftest import api_settings

    first = make_client().get("/v1/users/u5/recommendations", params={"k": 3}).json()["meta"]["next"]
    other = api_settings(tmp_path)
    other.home = tmp_path / "other-home"  # its own secrets/session.key: another signing key
    with TestClient(create_app(other, fake), raise_server_exceptions=False) as b:
        r = b.get("/v1/users/u5/recommendations", params={"k": 3, "cursor": first})
        garbled = b.get("/v1/users/u5/recommendations", params={"k": 3, "cursor": "not-a-cursor"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "another data directory" in detail and "RECSYS_HOME" in detail and "secrets/session.key" in detail
    # what cannot be a cursor at all is not blamed on the configuration
    assert garbled.status_code == 422 and "RECSYS_HOME" not in garbled.json()["detail"]
