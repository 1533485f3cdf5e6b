"""`recsys serve` / `recsys demo` start-up: a busy port fails before any work; the banner names the explorer."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from recsys.cli.serve import _banner, check_port
from recsys.config import Settings
from recsys.errors import ConfigError


def test_busy_port_is_a_clear_error_before_any_work() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"127.0.0.1:{port}.*--port N"):
            check_port("127.0.0.1", port)
    check_port("127.0.0.1", port)  # released: free again


def test_banner_names_the_explorer_the_key_command_and_real_ids(capsys: pytest.CaptureFixture[str]) -> None:
    _banner("127.0.0.1", 8123, True, "user-7", "item-9")
    out = capsys.readouterr().out
    assert "explorer: http://127.0.0.1:8123/" in out and "recsys keys create" in out
    assert "/v1/users/user-7/recommendations" in out and "/v1/items/item-9/similar" in out
    assert "USER_ID" not in out


def test_banner_puts_an_ipv6_host_in_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    _banner("::1", 8123, False, "user-7", "item-9")
    out = capsys.readouterr().out
    assert "explorer: http://[::1]:8123/" in out and "http://::1:" not in out


@pytest.mark.parametrize(("trusted", "expected"), [("", False), ("10.0.0.5", True)])
def test_forwarded_addresses_are_trusted_only_from_named_proxies(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, trusted: str, expected: bool) -> None:
    """uvicorn trusts X-Forwarded-For from loopback by default, so a local caller could pick the address its rate
    limit is counted on; the peer's own address counts unless the operator names the proxies."""
    import uvicorn

    from recsys.cli import serve
    from recsys.config import Settings

    seen: dict[str, object] = {}
    monkeypatch.setattr(serve, "check_port", lambda *a: None)
    monkeypatch.setattr(serve, "_check_schema", lambda *a: None)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    settings = Settings(home=tmp_path)
    settings.api = settings.api.model_copy(update={"forwarded_allow_ips": trusted})
    serve.run_serve(settings, host="127.0.0.1", port=8999, auth=False)
    assert seen["proxy_headers"] is expected
    assert seen["forwarded_allow_ips"] == (trusted or None)


def test_a_ranker_that_never_repeats_an_item_gets_no_buy_again_example(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # on MovieLens the banner offered a buy-again call that can only answer an empty list
    import json

    from recsys.ranking.artifact import MANIFEST, write_pointer
    from recsys.ranking.generations import current_repurchases, rankers_root

    settings = Settings(home=tmp_path)
    assert current_repurchases(settings) is None  # nothing trained: the example stays
    root = rankers_root(settings)
    for version, repurchase in (("r1", True), ("r2", False)):
        (root / version).mkdir(parents=True)
        (root / version / MANIFEST).write_text(json.dumps({"repurchase": repurchase}))
        write_pointer(root, version)
        assert current_repurchases(settings) is repurchase
    _banner("127.0.0.1", 8123, False, "user-7", "item-9", buy_again=False)
    quiet = capsys.readouterr().out
    _banner("127.0.0.1", 8123, False, "user-7", "item-9")
    assert "/buy-again" not in quiet and "/buy-again" in capsys.readouterr().out
