"""/readyz needs no key: a flood of probes from one address pings the database a bounded number of times and is
then answered from the last check; every probe is still answered."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from recsys.api.routes.health import LIVE_PINGS, READY_WINDOW_S, ReadyProbe


def test_probes_past_an_addresses_pings_read_nothing_and_get_the_last_check(
        make_client: Callable[..., TestClient]) -> None:
    client = make_client(refresh_seconds=3600.0)  # no refresh round pings during the test
    state = client.app.state  # type: ignore[attr-defined]
    clock = [0.0]
    state.ready_probe = ReadyProbe(clock=lambda: clock[0])
    pings: list[int] = []
    ping = state.runtime.ping
    state.runtime.ping = lambda: pings.append(1) or ping()
    answers = [client.get("/readyz") for _ in range(30)]
    assert {r.status_code for r in answers} == {200} and all(r.json()["store"] for r in answers)
    assert len(pings) == LIVE_PINGS
    state.runtime.store_ok = False  # what the refresh task saw last: answered as is, not pinged again
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["store"] is False and len(pings) == LIVE_PINGS
    clock[0] += READY_WINDOW_S  # the address's pings are free again: live, and the store answers
    assert client.get("/readyz").json()["store"] is True and len(pings) == LIVE_PINGS + 1
