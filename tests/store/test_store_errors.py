"""A PostgreSQL failure in its own words (recsys.store.db): a refused login, a missing database, a server that gave
no answer within the request's bound and a server that is down each say what is wrong and what to do. All used to
say "unreachable ... start it"."""

from __future__ import annotations

import socket
import uuid

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from recsys.errors import StoreTimeout, StoreUnavailable
from recsys.store import Store
from recsys.store.deadline import DeadlineExceeded, bounded
from tests.conftest import PG_URL


def _fails(url: str) -> StoreUnavailable:
    store = Store(url)
    try:
        with pytest.raises(StoreUnavailable) as raised, store.session() as s:
            s.execute(text("SELECT 1"))
        return raised.value
    finally:
        store.dispose()


@pytest.mark.postgres
def test_a_missing_database_says_create_it() -> None:
    if not PG_URL:
        pytest.skip("RECSYS_TEST_POSTGRES_URL not set")
    name = f"recsys_missing_{uuid.uuid4().hex[:8]}"
    e = _fails(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))
    assert type(e) is StoreUnavailable and e.code == "store_down"
    assert "does not exist on that server" in e.message and f"createdb {name}" in e.message, e.message
    assert "start it" not in e.message


@pytest.mark.postgres
def test_an_unknown_role_says_check_the_login() -> None:
    if not PG_URL:
        pytest.skip("RECSYS_TEST_POSTGRES_URL not set")
    e = _fails(make_url(PG_URL).set(username="recsys_no_such_role", password="s3cret").render_as_string(
        hide_password=False))
    assert "refused the login" in e.message and "check the user and password" in e.message, e.message
    assert "s3cret" not in e.message and "start it" not in e.message


@pytest.mark.parametrize("error", [
    psycopg.OperationalError('connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  '
                             'password authentication failed for user "app"'),  # libpq: words only, no SQLSTATE
    psycopg.errors.lookup("28P01")('password authentication failed for user "app"'),
], ids=["words", "sqlstate"])
def test_a_wrong_password_says_check_the_login(error: Exception) -> None:
    store = Store("postgresql+psycopg://app:s3cret@127.0.0.1:5432/shop")  # never connects
    e = store.unavailable(error)
    assert "refused the login" in e.message and "RECSYS_DATABASE_URL" in e.message, e.message
    assert "s3cret" not in e.message and "start it" not in e.message
    store.dispose()


def test_a_server_that_is_down_says_start_it() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    e = _fails(f"postgresql+psycopg://postgres@127.0.0.1:{port}/shop")
    assert "is unreachable" in e.message and "start it" in e.message, e.message


def test_no_answer_within_the_bound_says_busy_or_locked() -> None:
    store = Store("postgresql+psycopg://app@127.0.0.1:5432/shop")  # never connects
    for error, bound, words in (
            (DeadlineExceeded(0.5), None, "no answer in 0.5 s:"),  # the event loop's read gave up
            (psycopg.errors.lookup("55P03")("canceling statement due to lock timeout"), 2.0,
             "no answer in 2 s (canceling statement due to lock timeout)"),  # the server's own bound, set from it
            (psycopg.errors.lookup("57014")("canceling statement due to statement timeout"), None,
             "no answer in time"),  # a timeout set on the server, not a request's
    ):
        with bounded(bound):
            e = store.unavailable(error)
        assert isinstance(e, StoreTimeout) and e.code == "store_busy" and e.status == 503
        assert words in e.message and "locked" in e.message and "start it" not in e.message, e.message
    store.dispose()
