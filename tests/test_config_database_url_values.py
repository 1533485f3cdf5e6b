"""A ``RECSYS_DATABASE_URL`` with a port out of range or an option value libpq does not take (``sslmode=bogus``) is
refused when settings are read, in one line naming the variable: libpq refused it only at connect, which was said as
"the database is unreachable; start it"."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.config import Settings
from recsys.errors import ConfigError
from tests.conftest import run_main

PG = "postgresql+psycopg://app:s3cret@db.example"


@pytest.mark.parametrize(("tail", "said"), [
    (":99999/shop", "port '99999' is not a port number"),
    (":-1/shop", "port '-1' is not a port number"),
    (":0/shop", "port '0' is not a port number"),
    ("/shop?port=70000", "port '70000' is not a port number"),
    ("/shop?host=h1:5432&host=h2:99999", "port '99999' is not a port number"),
    ("/shop?sslmode=bogus", "sslmode='bogus' is not one of disable, allow, prefer, require, verify-ca, verify-full"),
    ("/shop?sslmode=REQUIRE", "sslmode='REQUIRE' is not one of"),
    ("/shop?target_session_attrs=master", "target_session_attrs='master' is not one of any, read-write"),
    ("/shop?gssencmode=on", "gssencmode='on' is not one of"),
    ("/shop?channel_binding=yes", "channel_binding='yes' is not one of"),
    ("/shop?load_balance_hosts=roundrobin", "load_balance_hosts='roundrobin' is not one of"),
    ("/shop?ssl_min_protocol_version=TLS1.2", "ssl_min_protocol_version='TLS1.2' is not one of TLSv1"),
    ("/shop?keepalives=yes", "keepalives='yes' is not a whole number"),
    ("/shop?require_auth=MD5", "require_auth='MD5' is not a list of"),
    ("/shop?require_auth=md5,!password", "mixes methods with and without '!'"),
    ("/shop?sslnegotiation=direct&sslmode=prefer", "sslnegotiation=direct needs sslmode=require"),
])
def test_a_bad_port_or_option_value_is_refused_when_read(tail: str, said: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_DATABASE_URL", PG + tail)
    with pytest.raises(ConfigError) as e:
        Settings()
    message = e.value.message
    assert message.startswith("RECSYS_DATABASE_URL ") and said in message, message
    assert "postgresql+psycopg://USER" in message and "s3cret" not in message and "\n" not in message


@pytest.mark.parametrize("tail", [
    ":5432/shop", ":65535/shop", "/shop?host=h1:5432&host=h2:5433", "/shop?sslmode=verify-full",
    "/shop?target_session_attrs=prefer-standby&load_balance_hosts=random", "/shop?gssencmode=disable",
    "/shop?ssl_min_protocol_version=tlsv1.2&ssl_max_protocol_version=TLSv1.3", "/shop?keepalives=1&keepalives_idle=30",
    "/shop?require_auth=scram-sha-256", "/shop?require_auth=!md5,!password", "/shop?channel_binding=require",
    "/shop?sslnegotiation=direct&sslmode=require", "/shop?tcp_user_timeout=%2B5",
])
def test_good_ports_and_option_values_are_kept(tail: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_DATABASE_URL", PG + tail)
    assert Settings().db_url == PG + tail


def test_the_cli_says_a_bad_port_as_a_config_error(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RECSYS_DATABASE_URL", "postgresql+psycopg://u@localhost:99999/db")
    code, err = run_main(monkeypatch, capsys, "stats")
    assert code == 2 and err.startswith("error [config]: RECSYS_DATABASE_URL") and err.count("\n") == 1, err
    assert "unreachable" not in err


# The table of fixed values is libpq 18's: under a later libpq, which may take values it lacks, they are left to
# libpq (ports and whole numbers stay checked).
def test_a_later_libpq_judges_the_fixed_values_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    monkeypatch.setattr(psycopg.pq, "version", lambda: 190000)
    monkeypatch.setenv("RECSYS_DATABASE_URL", PG + "/shop?target_session_attrs=some-future-value")
    assert Settings().db_url.endswith("some-future-value")
    monkeypatch.setenv("RECSYS_DATABASE_URL", PG + ":99999/shop")
    with pytest.raises(ConfigError, match="is not a port number"):
        Settings()
