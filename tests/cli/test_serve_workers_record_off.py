"""`recsys serve --workers N` with served lists not recorded: each worker knows only the lists it answered, so a
warning at start says that cursors and exclude_shown_hours see only the answering worker's lists."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from recsys.config import Settings


@pytest.mark.parametrize(("record", "workers", "warned"), [(False, 2, True), (True, 2, False), (False, 1, False)])
def test_workers_without_recording_warn_that_cursors_see_one_workers_lists(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path, record: bool,
        workers: int, warned: bool) -> None:
    import uvicorn

    from recsys.api import logs
    from recsys.cli import serve

    ran: list[object] = []
    monkeypatch.setattr(serve, "check_port", lambda *a: None)
    monkeypatch.setattr(serve, "_check_schema", lambda *a: None)
    monkeypatch.setattr(logs, "configure", lambda *a, **kw: None)  # the server's handlers would replace caplog's
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.append(app))
    monkeypatch.setattr(os, "environ", dict(os.environ))  # the supervisor's exports stay in this test
    caplog.set_level(logging.WARNING, serve.__name__)
    settings = Settings(home=tmp_path)
    settings.feedback = settings.feedback.model_copy(update={"record_served": record})
    serve.run_serve(settings, host="127.0.0.1", port=8999, auth=False, workers=workers)
    assert len(ran) == 1
    said = [r.getMessage() for r in caplog.records if r.name == serve.__name__ and r.levelno == logging.WARNING]
    if not warned:
        assert said == []
        return
    assert len(said) == 1 and "RECSYS_FEEDBACK__RECORD_SERVED=false" in said[0] and "2 workers" in said[0]
    assert "cursor" in said[0] and "exclude_shown_hours" in said[0]
