"""schemathesis over the OpenAPI schema: no generated input makes the server answer 5xx."""

from __future__ import annotations

from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error, status_code_conformance  # noqa: E402

from recsys.api import create_app  # noqa: E402
from recsys.api.testing import FakeRecommender  # noqa: E402
from recsys.store import Store  # noqa: E402
from tests.api.conftest import CATALOGUE, api_settings  # noqa: E402


def _app():  # type: ignore[no-untyped-def]
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="recsys-fuzz-"))
    store = Store(f"sqlite:///{home / 'recsys.db'}")
    store.upgrade()
    return create_app(api_settings(home), FakeRecommender(store, CATALOGUE))


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors(case) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(checks=[not_a_server_error, status_code_conformance])  # every answer documented
