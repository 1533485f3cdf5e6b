"""Temporal leave-last-out splits (DESIGN.md section 4).

Two protocols, chosen by the data's own grain:

``last_day`` (H&M): a test user's targets are the distinct items of their target-type events (purchases) on the last
    calendar day (UTC) on which they have one. The target time is the start of that day; the history is every event
    of the user strictly before it. Other events of that user on or after the target day are dropped.
``last_interaction`` (MovieLens): the target is the user's last target-type event (all types by default). Events
    with equal timestamps keep their input order (store order, i.e. file order), so the last row wins and exactly
    one item is the target. The history is every event of the user before it in that order.

Under both, events with equal timestamps keep their input order (a stable sort by time): insert order in the stored
split (``events_frame`` sorts by time, then row id), file order in ``--test-events``. That is deliberate: within one
of H&M's days the file's order is the order the purchases happened.

Test users are the users with at least ``min_history`` history events and at least one target. The training set --
what any model, popularity count or co-occurrence table may learn from -- is every event of users outside the test
set plus the history events of test users. Test targets (and anything at or after a test user's target time) never
reach it. Events of other users after a test user's target time do: the usual leave-last-out compromise, since each
user is cut at their own time.

``--test-events FILE``: :func:`read_test_events` parses the dataset's own interaction file (or a shop's own events
file, in ``recsys import events``'s columns) for users unknown to the store, :func:`split_test_events` cuts them the
same way (the training set is then the store's events plus their histories), and :func:`ingest_records` turns the
histories into mappings for the live ingestion path.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsys.errors import ValidationFailed
from recsys.evaluation.test_events import read_dataset_events

if TYPE_CHECKING:
    from recsys.evaluation.own_events import ReadOptions

log = logging.getLogger(__name__)

PROTOCOLS = ("last_day", "last_interaction")
ALIASES = {"hm": "last_day", "movielens": "last_interaction", "ml": "last_interaction"}
NEGATIVE_TYPES = frozenset({"dislike"})
"""Event types that are never targets and never count as positive interactions for the baselines."""
EVENT_COLUMNS = ["user_id", "item_id", "type", "value", "ts"]
TEST_EVENT_FORMATS = ("hm", "movielens", "events")
TEST_EVENT_FORMATS_SAID = ("choose hm (H&M's transactions.csv), movielens (u.data) or events (a shop's own events "
                           "file, as `recsys import events` reads it)")


def refuse_read_options(fmt: str | None, options: ReadOptions | None) -> None:
    """``--map``, ``--delimiter`` and ``--type`` say how to read a shop's own file; hm and movielens files have fixed
    layouts, so a word about them would be silently ignored: refused instead."""
    if options is not None and options.given() and fmt != "events":
        raise ValidationFailed(f"--map, --delimiter and --type apply to --format events (a shop's own events file), "
                               f"not to --format {fmt}, whose layout is fixed; leave them out")


def refuse_format_words(fmt: str | None, protocol: str | None, test_events: object) -> None:
    """``--format`` names the dataset of ``--test-events FILE`` and, for hm and movielens, fixes how its shoppers are
    cut: a ``--format`` without a file, or a ``--protocol`` that contradicts the dataset's, would be silently ignored
    (the stored split evaluated instead, for minutes; the dataset's protocol used): refused instead."""
    if fmt is not None and test_events is None:
        raise ValidationFailed(f"--format names the dataset of --test-events FILE (withheld shoppers); without a file "
                               f"the stored split is evaluated, cut by --protocol ({', '.join(PROTOCOLS)}, hm, "
                               "movielens or auto): give --test-events FILE, or leave --format out")
    fixed = ALIASES.get(fmt or "")
    if fixed is not None and protocol not in (None, "auto") and resolve_protocol(protocol) != fixed:
        raise ValidationFailed(f"--format {fmt} cuts withheld shoppers by {fixed} (the dataset's protocol), not by "
                               f"--protocol {protocol}: leave --protocol out, or give the file as --format events")


def positives(events: pd.DataFrame) -> pd.DataFrame:
    """Events that count as interactions (all but dislikes)."""
    return events[~events["type"].isin(NEGATIVE_TYPES)] if len(events) else events


@dataclass
class Split:
    """One evaluation split. Histories are per test user, sorted by time; targets are distinct item ids."""

    protocol: str
    train: pd.DataFrame
    """Events models may learn from: columns user_id, item_id, type, value, ts (plus whatever the input had)."""
    users: list[str]
    histories: dict[str, pd.DataFrame]
    targets: dict[str, list[str]]
    target_time: dict[str, pd.Timestamp]
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.users)

    @property
    def train_items(self) -> set[str]:
        """Items with at least one training interaction, a dislike not being one, at any time (the cold-item slice
        asks per user, before the target time: :meth:`first_sold`)."""
        return set(positives(self.train)["item_id"].astype(str).unique())

    @property
    def earliest_target(self) -> datetime | None:
        """The earliest target time of the split (None without users). What is fitted once rather than counted as of
        each target -- the co-purchase space -- may learn only from training events before it: pass it as
        ``RankingPipeline.fit(..., cobuy_before=split.earliest_target)``, as ``recsys evaluate`` does."""
        return min(self.target_time.values()).to_pydatetime() if self.target_time else None

    def train_before_targets(self) -> pd.DataFrame:
        """The training events strictly before :attr:`earliest_target` (all of them without users): what a space
        fitted outside :class:`recsys.ranking.RankingPipeline` may learn from."""
        first = self.earliest_target
        return self.train if first is None else self.train[self.train["ts"] < pd.Timestamp(first)]

    def first_sold(self) -> dict[str, pd.Timestamp]:
        """Each item's first positive training event (anyone's), a dislike not being one: an item is cold for a user
        when it has none strictly before their target time."""
        pos = positives(self.train)
        if not len(pos):
            return {}
        first = pos.groupby(pos["item_id"].astype(str))["ts"].min()
        return {str(i): pd.Timestamp(t) for i, t in first.items()}


def resolve_protocol(protocol: str, events: pd.DataFrame | None = None) -> str:
    """``hm``/``movielens`` aliases to protocol names; ``auto`` picks ``last_day`` when there are purchases."""
    p = ALIASES.get(protocol, protocol)
    if p == "auto":
        has_purchase = events is not None and bool((events["type"] == "purchase").any())
        return "last_day" if has_purchase else "last_interaction"
    if p not in PROTOCOLS:
        raise ValidationFailed(f"unknown evaluation protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}, "
                               "hm, movielens or auto")
    return p


def default_target_types(protocol: str, events: pd.DataFrame) -> tuple[str, ...]:
    """Purchases for ``last_day`` when there are any; otherwise every positive type present."""
    types = set(events["type"].astype(str).unique()) - NEGATIVE_TYPES
    if protocol == "last_day" and "purchase" in types:
        return ("purchase",)
    return tuple(sorted(types))


def _timestamps(ts: pd.Series) -> pd.Series:
    """Naive UTC datetimes (the store's convention) from datetimes or ISO 8601 strings."""
    out = ts if pd.api.types.is_datetime64_any_dtype(ts) else pd.to_datetime(ts, format="ISO8601", utc=True)
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert("UTC").dt.tz_localize(None)
    return out


def _normalise(events: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ValidationFailed(f"events frame lacks column(s) {missing}; expected {EVENT_COLUMNS}")
    ev = events.reset_index(drop=True).copy()
    ev["user_id"] = ev["user_id"].astype(str)
    ev["item_id"] = ev["item_id"].astype(str)
    ev["ts"] = _timestamps(ev["ts"])
    # stable: equal timestamps keep input order (store order = file order)
    ev = ev.sort_values("ts", kind="stable").reset_index(drop=True)
    return ev


PARTS = ("train", "validation", "test")
PART_SHARES = (0.5, 0.25, 0.25)
DEFAULT_SALT = "recsys-split-v1"


def user_part(user_id: str, salt: str = DEFAULT_SALT) -> str:
    """A user's part of the dataset, fixed by a salted hash of the id: ``train`` (half), ``validation`` or ``test``
    (a quarter each). Deterministic across runs and machines; independent of the data's order or size."""
    h = int.from_bytes(hashlib.blake2b(f"{salt}:{user_id}".encode(), digest_size=8).digest(), "big") / 2.0**64
    return PARTS[0] if h < PART_SHARES[0] else PARTS[1] if h < PART_SHARES[0] + PART_SHARES[1] else PARTS[2]


def temporal_split(events: pd.DataFrame, protocol: str = "auto", *, target_types: Collection[str] | None = None,
                   min_history: int = 1, max_users: int | None = None, seed: int = 0,
                   items: Collection[str] | None = None, part: str | None = None,
                   salt: str = DEFAULT_SALT) -> Split:
    """Split stored events (as from ``recsys.store.queries.events_frame``) by temporal leave-last-out.

    ``target_types`` defaults to :func:`default_target_types`; ``items`` (the recommendable catalogue, less what may
    not be served) drops targets outside it, for every model alike. The cut does not move: the target day (event)
    stays the user's last target-type one, whatever its items; a user none of whose targets there can be served is
    not evaluated. ``info["targets_unservable"]`` counts the distinct (user, item) target-type events of the
    evaluated users at or after their target time that it dropped, ``info["users_unservable"]`` the users of the
    part left out because each of their targets was such an item, ``info["users_too_short"]`` those left out with a
    target but fewer than ``min_history`` history events.
    ``max_users`` samples that many test users (seeded), the rest count as non-test users.
    ``part`` (``validation`` or ``test``) evaluates only the users of that part (:func:`user_part`); the targets of
    both held-out parts are kept out of training, so tuning on validation and reporting on test share one training
    set. None evaluates every eligible user.
    """
    if part is not None and part not in PARTS[1:]:
        raise ValidationFailed(f"unknown part {part!r}; choose validation or test")
    ev = _normalise(events)
    p = resolve_protocol(protocol, ev)
    if ev.empty:
        return Split(p, ev, [], {}, {}, {}, {"events": 0})
    ttypes = tuple(target_types) if target_types is not None else default_target_types(p, ev)
    any_tt = ev["type"].isin(ttypes).to_numpy()
    is_tt = any_tt & ev["item_id"].isin(set(map(str, items))).to_numpy() if items is not None else any_tt
    users = ev["user_id"]
    # the cut is the user's own (their last target-type day or event, whatever the item); only then are the
    # targets that cannot be served dropped: the target never moves to an earlier day
    before, any_target = _cut(ev, any_tt, p)
    is_target = any_target & is_tt
    eligible = _eligible(users, before, is_target, min_history)
    n_eligible, held = len(eligible), eligible
    lost_users: set[str] = set()
    if items is not None and (any_tt & ~is_tt).any():  # users whose every target is an item that cannot be served
        lost_users = set(_eligible(users, before, any_target, min_history)) - set(eligible)
    short_users = set(_eligible(users, before, any_target, 0)) - set(_eligible(users, before, any_target, min_history))
    if part is not None:
        lost_users = {u for u in lost_users if user_part(u, salt) == part}
        short_users = {u for u in short_users if user_part(u, salt) == part}
        held = [u for u in eligible if user_part(u, salt) != "train"]
        eligible = [u for u in held if user_part(u, salt) == part]
    if max_users is not None and len(eligible) > max_users:
        rng = np.random.default_rng(seed)
        eligible = sorted(rng.choice(np.array(eligible, dtype=object), size=max_users, replace=False).tolist())
    test = users.isin(set(eligible) | set(held if part is not None else ())).to_numpy()
    train = ev[~test | before].reset_index(drop=True)
    hist_rows = ev[test & before]
    tgt_rows = ev[test & is_target]
    split = _assemble(p, train, eligible, hist_rows, tgt_rows)
    lost = ev[users.isin(set(split.users)).to_numpy() & ~before & any_tt & ~is_tt]
    split.info.update({"events": len(ev), "train_events": len(train), "target_types": list(ttypes), "part": part,
                       "salt": salt if part is not None else None, "eligible_users": n_eligible,
                       "targets_unservable": int(len(lost.drop_duplicates(["user_id", "item_id"]))),
                       "users_unservable": len(lost_users), "users_too_short": len(short_users),
                       "min_history": min_history, "users_with_events": int(users.nunique())})
    if not split.users:  # said by the "nothing to evaluate" error: a dislike is never a history or a target
        split.info["users_only_dislikes"] = int(ev["type"].isin(NEGATIVE_TYPES).groupby(users).all().sum())
    log.info("split %s: %d test users, %d targets, %d training events", p, len(split.users),
             split.info["targets"], len(train))
    return split


def _cut(ev: pd.DataFrame, is_tt: np.ndarray, protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """(history, target) flags per event of :func:`temporal_split`'s cut, given which events may be targets."""
    users = ev["user_id"]
    if protocol == "last_day":
        day = ev["ts"].dt.floor("D")
        tday = day[is_tt].groupby(users[is_tt]).max()
        cut = users.map(tday)  # NaT for users without a target
        return (ev["ts"] < cut).to_numpy(), is_tt & (day == cut).to_numpy()
    order = np.arange(len(ev))
    tpos = pd.Series(order[is_tt]).groupby(users[is_tt].to_numpy()).max()
    cut_pos = users.map(tpos).to_numpy(dtype=np.float64)  # NaN for users without a target
    return order < np.nan_to_num(cut_pos, nan=-1), order == cut_pos


def _eligible(users: pd.Series, before: np.ndarray, is_target: np.ndarray, min_history: int) -> list[str]:
    """Users with at least ``min_history`` history events and a target, sorted."""
    n_hist = pd.Series(before).groupby(users.to_numpy()).sum()
    has_target = pd.Series(is_target).groupby(users.to_numpy()).any()
    return sorted(u for u in n_hist.index if n_hist[u] >= min_history and has_target[u])


def _assemble(protocol: str, train: pd.DataFrame, users: list[str], hist_rows: pd.DataFrame,
              tgt_rows: pd.DataFrame) -> Split:
    histories = {str(u): g.reset_index(drop=True) for u, g in hist_rows.groupby("user_id", sort=False)}
    empty = hist_rows.iloc[:0]
    targets: dict[str, list[str]] = {}
    for u, g in tgt_rows.groupby("user_id", sort=False):
        targets[str(u)] = list(dict.fromkeys(g["item_id"].tolist()))
    if protocol == "last_day":
        ttime = tgt_rows.groupby("user_id")["ts"].min().dt.floor("D")
    else:
        ttime = tgt_rows.groupby("user_id")["ts"].max()
    users = [u for u in users if u in targets]
    return Split(
        protocol=protocol, train=train, users=users,
        histories={u: histories.get(u, empty) for u in users},
        targets={u: targets[u] for u in users},
        target_time={u: pd.Timestamp(ttime[u]) for u in users},
        info={"targets": int(sum(len(targets[u]) for u in users))},
    )


# -- --test-events -------------------------------------------------------------------------------------------------

def read_test_events(path: Path | str, fmt: str, *, max_bad_fraction: float = 0.2,
                     options: ReadOptions | None = None) -> pd.DataFrame:
    """Parse a dataset's own interaction file into events (user_id, item_id, type, value, ts, client_event_id).

    ``hm``: transactions.csv (t_dat, customer_id, article_id, price, sales_channel_id) -> purchases, one per row.
    ``movielens``: u.data (user, item, rating, unix seconds; tab separated, no header) -> ratings.
    ``events``: a shop's own events file, as ``recsys import events`` reads it, every type kept
    (:func:`recsys.evaluation.own_events.read_own_events`), with the import's ``options`` (column map, delimiter,
    default type), which the datasets' fixed layouts refuse.
    Client event ids are derived exactly as the importers derive them, so replaying twice stores nothing twice.
    Bad rows are skipped and logged; more than ``max_bad_fraction`` of them raises :class:`ImportFailed`.
    """
    path = Path(path)
    fmt = {"ml": "movielens", "ml100k": "movielens"}.get(fmt, fmt)
    if fmt == "events":
        from recsys.evaluation.own_events import read_own_events

        return read_own_events(path, max_bad_fraction=max_bad_fraction, options=options)
    refuse_read_options(fmt, options)
    if fmt not in ("hm", "movielens"):
        raise ValidationFailed(f"unknown test-events format {fmt!r}; {TEST_EVENT_FORMATS_SAID}")
    return read_dataset_events(path, fmt, max_bad_fraction=max_bad_fraction)


def split_test_events(test_events: pd.DataFrame, protocol: str, *, train_events: pd.DataFrame,
                      known_users: Collection[str] | None = None, known_items: Collection[str] | None = None,
                      min_history: int = 1, target_types: Collection[str] | None = None,
                      items: Collection[str] | None = None) -> Split:
    """Cut withheld users' events (from :func:`read_test_events`) into histories and targets.

    ``train_events`` are the store's events (the withheld users are not in it); the split's training set is those
    plus the withheld users' histories. Users already in ``known_users`` are refused: their stored events would
    leak into the evaluation. Events on items outside ``known_items`` cannot be replayed and are dropped (counted),
    after the cut: each user is cut over all their events in the file, so a target on such an item stays the
    target and is dropped as one that cannot be served, as are targets outside ``items`` (the known items less the
    hidden or deleted ones), as :func:`temporal_split` does (``targets_unservable``, and ``users_unservable`` for
    the users left with none); a hidden item's events still count as history. Users left out are said in a warning.
    """
    ev = _normalise(test_events)
    if known_users is not None:
        clash = sorted(set(ev["user_id"]) & set(map(str, known_users)))
        if clash:
            raise ValidationFailed(f"{len(clash)} test user(s) already in the store (e.g. {clash[:3]}); "
                                   "--test-events needs users unknown to the store")
    p = resolve_protocol(protocol, ev)
    ttypes = tuple(target_types) if target_types is not None else default_target_types(p, ev)
    dropped = 0
    if known_items is not None:
        known = set(map(str, known_items))
        unknown = ~ev["item_id"].isin(known).to_numpy()
        dropped = int(unknown.sum())
        if dropped:
            log.warning("test events: %d event(s) on items unknown to the store dropped", dropped)
        # cut first: only history events are dropped here; the targets on unknown items go as unservable ones
        before, _ = _cut(ev, ev["type"].isin(ttypes).to_numpy(), p)
        ev = ev[~(unknown & before)]
        items = known if items is None else known & set(map(str, items))
    inner = temporal_split(ev, p, target_types=ttypes, min_history=min_history, items=items)
    _say_left_out(inner.info, p)
    hist = [h for h in inner.histories.values() if len(h)]
    base = _normalise(train_events) if len(train_events) else train_events
    train = pd.concat([base, *hist], ignore_index=True) if hist else base
    inner.train = train.sort_values("ts", kind="stable").reset_index(drop=True) if len(train) else train
    inner.info.update({"test_events": len(test_events), "dropped_unknown_items": dropped,
                       "train_events": len(inner.train), "source": "test_events"})
    return inner


def _say_left_out(info: Mapping[str, Any], protocol: str) -> None:
    """One warning line per reason a user of the file was not evaluated (counted in the split's info)."""
    short, lost = info.get("users_too_short", 0), info.get("users_unservable", 0)
    cut = "last day" if protocol == "last_day" else "last interaction"
    if short:
        log.warning("test events: %d user(s) not evaluated: too short a history (each needs at least %d event(s) "
                    "before their %s; split.users_too_short)", short, info.get("min_history", 1), cut)
    if lost:
        log.warning("test events: %d user(s) not evaluated: every target of their %s is on an item unknown to the "
                    "store, hidden or deleted (split.users_unservable)", lost, cut)


def ingest_records(history: pd.DataFrame) -> list[Mapping[str, Any]]:
    """History rows as mappings for ``recsys.store.events.ingest_events`` (the live ingestion path)."""
    out: list[Mapping[str, Any]] = []
    has_cid = "client_event_id" in history.columns
    for r in history.itertuples(index=False):
        value = getattr(r, "value", None)
        rec: dict[str, Any] = {
            "user_id": r.user_id, "item_id": r.item_id, "type": r.type,
            "value": None if value is None or pd.isna(value) else float(value),
            "timestamp": pd.Timestamp(r.ts).isoformat(),
        }
        if has_cid and r.client_event_id:
            rec["event_id"] = r.client_event_id
        out.append(rec)
    return out
