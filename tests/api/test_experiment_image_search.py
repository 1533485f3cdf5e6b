"""Image search joins the experiment running on the search surface, like text search: ``user_id`` (a form field)
assigns the variant, whose modality is used unless the request names one; the list carries and records it."""

from __future__ import annotations

import io
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from recsys.api import create_app
from recsys.config import ExperimentsSettings
from tests.api.conftest import api_settings
from tests.api.test_feedback import StoringFake, _served
from tests.api.test_feedback import storing as storing  # a fixture

LOOKS = {"name": "looks", "surfaces": ["search"],
         "variants": [{"name": "image", "share": 0.5}, {"name": "fused", "share": 0.5, "modality": "fused"}]}


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def test_image_search_takes_the_variants_modality_unless_asked(tmp_path: Path, storing: StoringFake) -> None:
    s = api_settings(tmp_path)
    s.experiments = ExperimentsSettings(definitions=[LOOKS])
    calls: list[str] = []
    real = storing.search_image
    storing.search_image = lambda *a, **kw: calls.append(kw["modality"]) or real(*a, **kw)  # type: ignore
    with TestClient(create_app(s, storing), raise_server_exceptions=False) as c:
        exps = c.app.state.experiments  # type: ignore[attr-defined]
        fused = next(f"u{i}" for i in range(50) if exps.assign("search", f"u{i}").variant.name == "fused")
        plain = next(f"u{i}" for i in range(50) if exps.assign("search", f"u{i}").variant.name == "image")

        def search(**form: str) -> dict[str, object]:
            r = c.post("/v1/search/image", files={"image": ("q.png", _png(), "image/png")}, data={"k": "2", **form})
            assert r.status_code == 200, r.text
            meta: dict[str, object] = r.json()["meta"]
            return meta

        meta = search(user_id=fused)
        assert (meta["experiment"], meta["variant"]) == ("looks", "fused")
        search(user_id=fused, modality="text")  # what the request asks for wins over its variant
        assert search(user_id=plain)["variant"] == "image"
        assert "variant" not in search()  # no user: no experiment, the image vectors as before
        assert calls == ["fused", "text", "image", "image"]
        assert c.post("/v1/search/image", files={"image": ("q.png", _png(), "image/png")},
                      data={"user_id": "bad\x01id"}).status_code == 422
        rows = _served(c)
        assert sorted((r.user_id or "", r.source, r.experiment or "", r.variant or "") for r in rows.values()) == \
            sorted([("", "search_image", "", ""), (fused, "search_image", "looks", "fused"),
                    (fused, "search_image", "looks", "fused"), (plain, "search_image", "looks", "image")])
