"""API keys: hashed at rest, read vs admin scope, revocation without restart, loopback-only when auth is off."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from recsys.api import create_app
from recsys.api.auth import KeyRing, create_key, hash_key, list_keys, revoke_key
from recsys.api.testing import FakeRecommender
from recsys.errors import NotFound, ValidationFailed
from recsys.store import Store
from recsys.store.tables import ApiKey
from tests.api.conftest import api_settings


def test_keys_are_stored_hashed(sqlite_store: Store) -> None:
    key, info = create_key(sqlite_store, "frontend", "read")
    assert key.startswith("rsk_") and len(key) > 40 and info.scope == "read"
    with sqlite_store.session() as s:
        stored = s.scalars(select(ApiKey.key_hash)).all()
    assert stored == [hash_key(key)] and key not in stored
    with pytest.raises(ValidationFailed):
        create_key(sqlite_store, "frontend", "read")
    with pytest.raises(ValidationFailed):
        create_key(sqlite_store, "x", "root")
    revoke_key(sqlite_store, "frontend")
    assert [k.revoked for k in list_keys(sqlite_store)] == [True]
    with pytest.raises(NotFound):
        revoke_key(sqlite_store, "nobody")
    with pytest.raises(ValidationFailed, match="revoked"):
        create_key(sqlite_store, "frontend", "read")
    for bad in ("tab\tname", "two\nlines", "   "):  # they broke `recsys keys list`'s table
        with pytest.raises(ValidationFailed, match="1 to 200 characters"):
            create_key(sqlite_store, bad)
    create_key(sqlite_store, " spaced ")
    revoke_key(sqlite_store, " spaced ")  # found under the stripped name it was stored as
    assert {k.name: k.revoked for k in list_keys(sqlite_store)}["spaced"] is True


def test_keyring_lookup(sqlite_store: Store) -> None:
    key, _ = create_key(sqlite_store, "a", "admin")
    ring = KeyRing(sqlite_store)
    ring.reload()
    found = ring.lookup(key)
    assert found is not None and found.name == "a" and found.allows("read") and found.allows("admin")
    assert ring.lookup(key + "x") is None and ring.lookup("") is None


def test_metrics_can_be_opened_to_scrapers_alone(make_client: Callable[..., TestClient]) -> None:
    closed = make_client(auth=True)
    assert closed.get("/metrics").status_code == 401
    scraped = make_client(auth=True, metrics_public=True)
    r = scraped.get("/metrics")
    assert r.status_code == 200 and "recsys_" in r.text
    assert scraped.get("/v1/trending").status_code == 401  # nothing else opens
    assert scraped.get("/v1/status").status_code == 401


def test_scopes(make_client: Callable[..., TestClient], sqlite_store: Store) -> None:
    c = make_client(auth=True)
    read, _ = create_key(sqlite_store, "reader", "read")
    admin, _ = create_key(sqlite_store, "admin", "admin")
    r = c.get("/v1/trending")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    assert c.get("/v1/trending", headers={"X-API-Key": "rsk_wrong"}).status_code == 401
    assert c.get("/v1/trending", headers={"X-API-Key": read}).status_code == 200
    assert c.get("/v1/trending", headers={"Authorization": f"Bearer {read}"}).status_code == 200
    assert c.get("/metrics", headers={"X-API-Key": read}).status_code == 200
    event = {"events": [{"user_id": "u", "item_id": "s1", "type": "view"}]}
    r = c.post("/v1/events", json=event, headers={"X-API-Key": read})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert c.post("/v1/events", json=event, headers={"X-API-Key": admin}).status_code == 200
    assert c.delete("/v1/items/s1", headers={"X-API-Key": read}).status_code == 403
    assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200  # probes need no key


def test_an_events_key_sends_events_and_reads_but_changes_nothing_else(make_client: Callable[..., TestClient],
                                                                       sqlite_store: Store) -> None:
    """The key a storefront or tracking collector holds: queries and events, but no catalogue change, deletion or
    report (least privilege: a leaked collector key cannot delist the catalogue or erase shoppers)."""
    c = make_client(auth=True)
    key, info = create_key(sqlite_store, "collector", "events")
    h = {"X-API-Key": key}
    assert info.scope == "events"
    assert c.get("/v1/trending", headers=h).status_code == 200
    event = {"events": [{"user_id": "u", "item_id": "s1", "type": "view"}]}
    assert c.post("/v1/events", json=event, headers=h).status_code == 200
    refused = [c.delete("/v1/items/s1", headers=h), c.delete("/v1/users/u", headers=h),
               c.put("/v1/items/s9", json={"title": "x"}, headers=h), c.get("/v1/feedback/report", headers=h)]
    assert [r.status_code for r in refused] == [403] * 4
    assert "needs 'admin'" in refused[0].json()["error"]["message"]


def test_revoked_key_stops_working(make_client: Callable[..., TestClient], sqlite_store: Store) -> None:
    c = make_client(auth=True)
    key, _ = create_key(sqlite_store, "temp", "read")
    assert c.get("/v1/trending", headers={"X-API-Key": key}).status_code == 200
    revoke_key(sqlite_store, "temp")  # from another process (`recsys keys revoke`): no reload in between
    assert c.get("/v1/trending", headers={"X-API-Key": key}).status_code == 401
    assert c.get("/v1/trending", headers={"X-API-Key": key}).status_code == 401  # and it stays out of the ring


def test_auth_off_serves_loopback_only(tmp_path, fake: FakeRecommender) -> None:  # type: ignore[no-untyped-def]
    app = create_app(api_settings(tmp_path, auth=False), fake)
    with TestClient(app, client=("127.0.0.1", 5000), base_url="http://localhost:8000") as local:
        assert local.get("/v1/trending").status_code == 200
    with TestClient(app, client=("10.1.2.3", 5000)) as remote:
        r = remote.get("/v1/trending")
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


def test_serve_refuses_auth_off_on_public_address(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from recsys.cli.serve import is_loopback, run_serve
    from recsys.errors import ConfigError

    with pytest.raises(ConfigError):
        run_serve(api_settings(tmp_path), host="0.0.0.0", port=1, auth=False)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")


def test_keys_cli(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import json

    import typer
    from typer.testing import CliRunner

    from recsys.cli import serve
    from recsys.config import get_settings

    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "h"))
    get_settings.cache_clear()
    app = typer.Typer()
    serve.register(app)
    runner = CliRunner()
    try:
        from recsys.cli._common import open_store

        open_store(create=True).dispose()  # an empty store
        r = runner.invoke(app, ["keys", "list"])  # none yet: said on stderr (it printed nothing at all)
        assert r.exit_code == 0 and r.stdout == "" and "no API keys yet" in r.stderr
        r = runner.invoke(app, ["keys", "create", "ci", "--scope", "admin", "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout.strip().splitlines()[-1])["key"].startswith("rsk_")
        r = runner.invoke(app, ["keys", "list", "--json"])
        assert [(k["name"], k["scope"], k["revoked"]) for k in json.loads(r.stdout.splitlines()[-1])] == [
            ("ci", "admin", False)]
        assert runner.invoke(app, ["keys", "revoke", "ci"]).exit_code == 0
    finally:
        get_settings.cache_clear()


def _first_login(path: str, barrier: Any, out: Any) -> None:
    from recsys.api.web import session

    barrier.wait()
    try:
        out.put(session._secret(Path(path)).hex())
    except Exception as e:  # reported to the test, which names it
        out.put(f"{type(e).__name__}: {e}")


def test_workers_logging_in_at_once_share_one_session_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first logins on several workers of a fresh server race to create the secret: none may read it half
    written (a 500 telling the operator to delete a good file), and all end up with the same one. The random bytes
    come slowly here, so that a loser of the race would find an empty file every time."""
    import multiprocessing
    import secrets
    import time

    original = secrets.token_bytes

    def slow(n: int | None = None) -> bytes:
        time.sleep(0.05)
        return original(n)

    monkeypatch.setattr(secrets, "token_bytes", slow)
    ctx = multiprocessing.get_context("fork")
    for round_ in range(5):
        path = tmp_path / str(round_) / "secrets" / "session.key"
        barrier, out = ctx.Barrier(6), ctx.Queue()
        workers = [ctx.Process(target=_first_login, args=(str(path), barrier, out)) for _ in range(6)]
        for w in workers:
            w.start()
        got = [out.get(timeout=60) for _ in workers]
        for w in workers:
            w.join(60)
        assert len(set(got)) == 1 and len(got[0]) == 64, got
        assert [p.name for p in path.parent.iterdir()] == ["session.key"]  # no temporary file left behind
        assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("mac", ["é" * 64, "zz", "A" * 64])
def test_a_malformed_session_cookie_is_no_session(tmp_path: Path, sqlite_store: Store, mac: str) -> None:
    """A cookie whose signature is not one of our digests (non-ASCII text made compare_digest raise: a 500) is no
    session, answered before any key lookup."""
    import time

    from recsys.api.web import session
    from tests.conftest import run_async

    class Ring:
        looked_up = 0

        async def entry(self, name: str) -> None:
            Ring.looked_up += 1

    settings = api_settings(tmp_path)
    value = f"bWU.{int(time.time()) + 3600}.{mac}"
    assert run_async(session.principal(settings, Ring(), value)) is None  # type: ignore[arg-type]
    assert Ring.looked_up == 0
