"""A copied demo home keeps its pictures: imports record absolute image paths, and ``cp -a demo-home home`` (or a moved
clone) used to serve none of them. Over the real built demo and the real service, no browser needed."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.e2e_fixture import built_demo, e2e_settings, private_home

pytestmark = [pytest.mark.slow]  # the shared demo build, once per session


def test_a_copied_home_serves_the_pictures_under_it(tmp_path_factory: pytest.TempPathFactory,
                                                    tmp_path: Path) -> None:
    from recsys.api import create_app

    home, demo = built_demo(tmp_path_factory)
    copy = private_home(home, tmp_path / "copied-home")
    shutil.copytree(demo / "images", copy / demo.name / "images")  # the demo's data inside its home, as `recsys demo`
    (copy / "imported_media_roots.json").unlink(missing_ok=True)  # ... which records no folder outside the home
    with TestClient(create_app(e2e_settings(copy))) as client:
        page = client.get("/").text
        pictures = sorted(set(re.findall(r'src="(/media/[^"?]+)"', page)))
        assert len(pictures) >= 10
        for url in pictures:
            r = client.get(url)
            assert r.status_code == 200 and r.headers["content-type"] == "image/png", (url, r.text[:200])
        some = pictures[0].removeprefix("/media/")
        (copy / demo.name / "images").rename(copy / "elsewhere")  # gone from under the home: nothing else is served
        assert client.get(f"/media/{some}").status_code == 404
