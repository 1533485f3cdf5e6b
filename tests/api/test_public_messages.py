"""What an API caller reads of a store error: a privilege the database refused is not "unreachable; retry shortly"
(PostgreSQL audit D1: retrying cannot help until the operator grants it)."""

from __future__ import annotations

from recsys.api.errors import public_message
from recsys.errors import StoreDenied, StoreUnavailable


def test_a_refused_privilege_is_not_told_to_retry() -> None:
    denied = public_message(StoreDenied("database postgresql://app@db/shop refused role app an INSERT (...)"))
    assert "refused this server a privilege" in denied and "retry shortly" not in denied
    assert "app@db" not in denied  # the server log has the database and the role, not the caller
    assert public_message(StoreUnavailable("database x is unreachable")) == "the database is unreachable; retry shortly"
