"""The personal list's query string, read in one validation: the same constraints and answers as declared
parameters, repeated parameters for lists, unknown ones refused (``_``-names, cache busters, ignored), every
parameter in the OpenAPI schema."""

from __future__ import annotations

from fastapi.testclient import TestClient

from recsys.api.routes.query import RecommendQuery


def test_bad_values_are_422_naming_the_parameter(client: TestClient) -> None:
    for query, name in [("k=0", "k"), ("k=abc", "k"), ("diversity=2", "diversity"), ("exploration=-1", "exploration"),
                        ("explain=maybe", "explain"), ("now=yesterday", "now"), ("cursor=%24%24", "cursor"),
                        ("price_min=nan", "price_min"), ("exclude_shown_hours=99999", "exclude_shown_hours"),
                        ("pin=" + "&pin=".join(f"h{i}=1" for i in range(101)), "pin")]:
        r = client.get(f"/v1/users/u1/recommendations?{query}")
        assert r.status_code == 422, (query, r.text)
        body = r.json()
        assert body["code"] == "invalid"
        assert any(d["loc"][:2] == ["query", name] for d in body["error"]["details"]), (query, body)


def test_values_reach_the_list(client: TestClient) -> None:
    r = client.get("/v1/users/u1/recommendations?k=3&category=hats&category=shoes&explain=true&debug=1&_=17"
                   "&exclude=h1&exclude=h2&price_max=30")
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["items"]) == 3 and "debug" in body
    assert not {"h1", "h2"} & {it["item_id"] for it in body["items"]}
    assert client.get("/v1/users/u1/recommendations?price_min=5&price_max=1").status_code == 422  # filter's own
    assert client.get("/v1/users/u1/recommendations?attr=nocolon").status_code == 422
    typo = client.get("/v1/users/u1/recommendations?categroy=hats")  # not an unfiltered list
    assert typo.status_code == 422 and typo.json()["error"]["details"][0]["loc"] == ["query", "categroy"]
    named = client.get("/v1/users/u1/recommendations?k=3&pin=nosuch=1&boost=h1=2&bury=category:hats&bury=gone")
    assert named.status_code == 200 and named.json()["meta"]["unknown_items"] == ["nosuch", "gone"]  # typos said
    assert "unknown_items" not in client.get("/v1/users/u1/recommendations?k=3&pin=h1=1").json()["meta"]
    assert client.get("/v1/users/u1/recommendations?k=3&bury=a%0Ab").status_code == 422  # as a POST body refuses


def test_every_parameter_is_documented(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"]["/v1/users/{user_id}/recommendations"]["get"]
    documented = {p["name"]: p for p in op["parameters"] if p["in"] == "query"}
    assert set(documented) == set(RecommendQuery.model_fields)
    assert documented["k"]["schema"]["maximum"] == 1000 and documented["k"]["schema"]["minimum"] == 1
    assert documented["boost"]["description"].startswith("KEY=B")


def test_the_filterable_get_routes_refuse_unknown_parameters(client: TestClient) -> None:
    for path in ("/v1/trending", "/v1/items/s1/similar", "/v1/search/text?q=hat", "/v1/users/u1/buy-again"):
        sep = "&" if "?" in path else "?"
        typo = client.get(f"{path}{sep}categroy=hats")
        assert typo.status_code == 422 and typo.json()["error"]["details"][0]["loc"] == ["query", "categroy"], path
        ok = client.get(f"{path}{sep}k=2&_=17" + ("&category=hats" if "buy-again" not in path else ""))
        assert ok.status_code == 200, (path, ok.text)


def test_a_lists_user_id_is_refused_untrimmed_as_a_paths(client: TestClient) -> None:
    """" u1" would record the list, and bucket its variant, under an id no event can carry (events and paths refuse
    it: ids are stored trimmed), so every event on the list would be unattributed."""
    from tests.api.test_feedback import _png

    for bad in (" u1", "u1 ", "\u00a0u1"):  # a no-break space is stripped as well
        answers = {
            "search GET": client.get("/v1/search/text", params={"q": "hat", "user_id": bad}),
            "similar GET": client.get("/v1/items/s1/similar", params={"user_id": bad}),
            "search POST": client.post("/v1/search/text", json={"query": "hat", "user_id": bad}),
            "similar POST": client.post("/v1/items/s1/similar", json={"user_id": bad}),
            "image": client.post("/v1/search/image", files={"image": ("q.png", _png(), "image/png")},
                                 data={"user_id": bad}),
        }
        for name, r in answers.items():
            assert r.status_code == 422, (name, bad, r.text)
            assert "whitespace" in r.text, (name, r.text)
    ok = client.get("/v1/search/text", params={"q": "hat", "user_id": "u 1"})  # inner spaces are an id's own
    assert ok.status_code == 200, ok.text
