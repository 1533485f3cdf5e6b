"""Attribution and time: an event dated before its list was served (beyond the clock-skew tolerance) is one the list
cannot have led to, so it is counted as unattributed, in the feedback report and the experiment report alike."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from recsys.experiments import experiment_report, parse_experiments
from recsys.feedback import Served, ServedLog, feedback_report
from recsys.feedback.attribution import CLOCK_SKEW
from recsys.store import Store
from recsys.store.events import ingest_events
from recsys.store.importers import run_import
from recsys.store.tables import utcnow


def _iso(t: datetime) -> str:
    return t.isoformat() + "Z"


def test_events_dated_before_their_list_are_unattributed(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(json.dumps({"item_id": i, "title": i}) for i in ("a1", "a2", "a3")))
    run_import(store, "items", path)
    served_at = utcnow() - timedelta(hours=1)
    log = ServedLog(store, linger_s=0.0)
    rid = "9" * 32
    log.record(Served(rid, "recommend", ("a1", "a2", "a3"), "u1", experiment="ab", variant="control",
                      created_at=served_at))
    assert log.flush(30)
    log.close()
    early = served_at - CLOCK_SKEW - timedelta(seconds=1)
    skewed = served_at - CLOCK_SKEW + timedelta(seconds=30)  # a device clock a little behind: still counted
    events = [
        *({"user_id": "u1", "item_id": i, "type": "impression", "recommendation_id": rid, "position": p}
          for p, i in enumerate(("a1", "a2", "a3"))),
        {"user_id": "u1", "item_id": "a1", "type": "click", "recommendation_id": rid, "timestamp": "2025-01-01"},
        {"user_id": "u1", "item_id": "a2", "type": "click", "recommendation_id": rid, "timestamp": _iso(early)},
        {"user_id": "u1", "item_id": "a2", "type": "purchase", "recommendation_id": rid, "timestamp": _iso(early)},
        {"user_id": "u1", "item_id": "a2", "type": "purchase", "recommendation_id": rid},  # after: this one counts
        {"user_id": "u1", "item_id": "a3", "type": "click", "recommendation_id": rid, "timestamp": _iso(skewed)},
    ]
    assert all(r.status == "stored" for r in ingest_events(store, events))
    g = feedback_report(store)["groups"][0]
    assert (g["impressions"], g["clicks"], g["purchases"], g["unattributed"]) == (3, 1, 1, 3)
    exp = parse_experiments([{"name": "ab", "variants": [{"name": "control", "share": 1.0}]}]).get("ab")
    arm = experiment_report(store, exp)["variants"][0]
    assert (arm["impressions"], arm["clicks"], arm["conversions"]) == (3, 1, 1)
