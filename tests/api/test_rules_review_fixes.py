"""Rules review fixes over HTTP (the fake service): a pin names an item (``category:NAME`` refused, as a position
that is not ASCII digits), and in an explained list the items a rule put there are explained too."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from recsys.api.testing import FakeRecommender
from recsys.experiments.definitions import Variant

LIST = "/v1/users/u1/recommendations"
SESSION = "/v1/sessions/recommendations"
EVENTS = [{"item_id": "s1", "type": "purchase"}]


def _refused(r: Any, name: str) -> str:
    """The 422's message, checked to name the parameter (in its words or a detail's location)."""
    assert r.status_code == 422, r.text
    body = r.json()
    where = [d["loc"][:2] for d in body["error"].get("details") or ()]
    assert name in body["error"]["message"] or ["body", name] in where, body
    return str(body)


def test_a_category_pin_is_refused_not_ignored(client: TestClient) -> None:
    """``pin=category:hats=1`` answered 200 with nothing pinned and nothing in meta: hats were never pinned."""
    said = _refused(client.get(LIST, params={"k": 4, "pin": "category:hats=1"}), "pin")
    assert "item id" in said
    assert "item id" in _refused(client.post(LIST, json={"k": 4, "pins": {"category:hats": 1}}), "pins")
    assert "item id" in _refused(client.post(SESSION, json={"k": 4, "events": EVENTS, "pins": {"category:hats": 1}}),
                                 "pins")
    ok = client.get(LIST, params={"k": 4, "pin": "h2=1", "bury": "category:shoes", "boost": "category:hats=1"})
    assert ok.status_code == 200 and ok.json()["items"][0]["item_id"] == "h2"  # categories elsewhere: as before


def test_a_variant_that_pins_a_category_is_refused() -> None:
    with pytest.raises(ValidationError, match="item id, not a category"):
        Variant(name="v", share=0.5, pins={"category:hats": 1})
    assert Variant(name="v", share=0.5, pins={"h1": 1}, bury=["category:hats"]).pins == {"h1": 1}


@pytest.mark.parametrize("raw", ["true", "\u0661", "1_0", "+1", " 1", "1 ", "1.0", "\uff11"])
def test_a_query_pin_position_is_ascii_digits(client: TestClient, raw: str) -> None:
    """``int()`` took ``1_0`` as 10 (off a page of 5), ``١`` as 1 and ``true`` was the query string's typo."""
    _refused(client.get(LIST, params={"k": 5, "pin": f"h1={raw}"}), "pin")


@pytest.mark.parametrize("pos", [True, "1", 1.0, "\u0661"])
def test_a_body_pin_position_is_a_json_integer(client: TestClient, pos: Any) -> None:
    """pydantic's lax mode read ``true`` and ``"1"`` as position 1."""
    _refused(client.post(LIST, json={"k": 5, "pins": {"h1": pos}}), "pins")
    _refused(client.post(SESSION, json={"k": 5, "events": EVENTS, "pins": {"h1": pos}}), "pins")


def test_ascii_positions_still_pin(client: TestClient) -> None:
    for r in (client.get(LIST, params={"k": 5, "pin": "h1=02"}), client.post(LIST, json={"k": 5, "pins": {"h1": 2}})):
        assert r.status_code == 200, r.text
        assert r.json()["items"][1]["item_id"] == "h1" and "pinned" in r.json()["items"][1]["sources"]


def test_pinned_and_explored_items_are_explained(client: TestClient, fake: FakeRecommender) -> None:
    """explain=true left them ``"explanation": null``, and a ranked item a pin moved kept ``sources`` without
    ``pinned``."""
    fake.events["u1"] = [("s1", "purchase"), ("s2", "view")]
    plain = [it["item_id"] for it in client.get(LIST, params={"k": 8}).json()["items"]]
    outsider = next(i for i in [*(f"h{n}" for n in range(1, 9)), *(f"s{n}" for n in range(1, 9))] if i not in plain)
    seen_explored = False
    for user in ("u1", "u12", "u123", "u1234"):
        fake.events[user] = fake.events["u1"]
        r = client.get(f"/v1/users/{user}/recommendations", params={
            "k": 8, "explain": "true", "pin": [f"{outsider}=2", f"{plain[5]}=1"], "exploration": 0.5})
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert all(it["explanation"] is not None for it in items), items
        assert items[1]["item_id"] == outsider
        assert items[1]["explanation"]["reason"] == "pinned" and items[1]["explanation"]["because_of"] is None
        assert items[1]["explanation"]["sources"] == items[1]["sources"] and items[1]["sources"][-1] == "pinned"
        assert items[0]["item_id"] == plain[5] and items[0]["explanation"]["sources"] == items[0]["sources"]
        assert items[0]["sources"][-1] == "pinned"
        for it in items:
            if it["sources"] == ["exploration"]:
                seen_explored = True
                assert it["explanation"]["reason"] == "exploration" and it["explanation"]["because_of"] is None
    assert seen_explored
    off = client.get(LIST, params={"k": 8, "pin": f"{outsider}=2", "exploration": 0.5}).json()["items"]
    assert all(it.get("explanation") is None for it in off)  # not asked for: none made
