"""Offline jobs and queries: build, train, evaluate, search, similar, recommend.

Query commands print a JSON list (best first) on the last stdout line; `evaluate --json` prints one JSON object.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

import typer

from recsys.cli._common import (
    BoostOpt,
    BuryOpt,
    DelimiterOpt,
    DiversityOpt,
    EventTypeOpt,
    ExplorationOpt,
    ItemIdArg,
    JsonOpt,
    MapOpt,
    NowOpt,
    PinOpt,
    emit_json,
    err,
    open_store,
    parse_map,
    parse_now,
    progress_bar,
    warn_unmatched_rules,
)
from recsys.cli.columns import cut, pad
from recsys.cli.user_notes import no_events, nothing_again
from recsys.store.limits import MAX_ID, MAX_K

search_app = typer.Typer(help="Content search by text or image.", no_args_is_help=True)

FilterOpt = Annotated[
    list[str] | None,
    typer.Option("--filter", help="category=A|B, price<=X, price>=X, in_stock=true, attr.KEY=VALUE (repeatable)"),
]
KOpt = Annotated[int, typer.Option("--k", min=1, max=MAX_K, help="number of results")]
ExplainOpt = Annotated[bool, typer.Option("--explain", help="say why each item is there: the history item it is like "
                                                          "(or repeats), or else its sources in words")]


_WARM: dict[str, Any] = {}
"""The recommender `recsys shell` keeps between commands (empty outside the shell)."""


def keep_warm(on: bool) -> None:
    """Reuse one recommender across commands (``recsys shell``), or drop it."""
    _WARM.clear()
    if on:
        _WARM["on"] = True


def _recommender() -> Any:
    if "rec" in _WARM:  # what a build, a rollback or another process published since the last command, as a server
        _WARM["rec"].refresh()  # would on its next refresh round (a read of the `current` pointers when nothing did)
        return _WARM["rec"]
    rec = _new_recommender()
    if "on" in _WARM:
        _WARM["rec"] = rec
    return rec


def _new_recommender() -> Any:
    from recsys.config import get_settings
    from recsys.service import Recommender

    return Recommender(get_settings(), open_store())


def _as_served() -> AbstractContextManager[None]:
    """The server's compute threads around a ranking call: the same request, the same list
    (:mod:`recsys.serving.threads`)."""
    from recsys.config import get_settings
    from recsys.serving.threads import as_served

    return as_served(get_settings().api.compute_threads)


def _print(results: list[Any], json_out: bool, rec: Any = None, *, history: Any = None,
           empty: str = "no results (an empty catalogue, or the filters or exclusions left nothing)") -> None:
    """With ``--json`` the JSON list on the last stdout line (the contract); else a table with titles (``empty``
    when there is none). ``history``: what explanations could name (:func:`recsys.serving.reasons.history_state`)."""
    rows = [r.to_dict() for r in results]
    if json_out:
        emit_json(rows)
        return
    if not rows:
        typer.echo(empty)
        return
    because = [str((r.get("explanation") or {}).get("because_of") or "") for r in rows]
    titles = _titles(rec, [r["item_id"] for r in rows] + [b for b in because if b]) if rec is not None else {}
    typer.echo(f"{'#':>3}  {'item':<14} {'title':<40} {'category':<18} {'score':>8}  sources")
    for i, r in enumerate(rows, 1):
        title, category = titles.get(r["item_id"], ("", ""))
        src = ",".join(r.get("sources", []))
        typer.echo(f"{i:>3}. {pad(r['item_id'], 14)} {pad(cut(title, 40), 40)} {pad(cut(category, 18), 18)} "
                   f"{r['score']:>8.4f}  {src}")
        if r.get("explanation"):  # the row's sources: a list rule's (pinned, exploration) are added after ranking
            e = {**r["explanation"], "sources": r.get("sources") or r["explanation"].get("sources") or []}
            typer.echo(f"{'':>5}{_reason(e, titles, history)}")


def _reason(e: dict[str, Any], titles: dict[str, tuple[str, str]], history: Any = None) -> str:
    """An explanation as a line: why the item is on the list (``--explain`` in the table). A look-alike below the
    explorer's cut-off (a handbag "like a bucket hat" at 0.07) is no reason: the sources are named instead."""
    from recsys.serving.reasons import history_note, shows_look_alike, source_reason

    ev = e.get("because_event") or {}
    what = f"{ev.get('type') or 'event'} {ev.get('date') or ''}".strip()
    if e.get("reason") == "repeat":
        return f"repeat: your {what}"
    if e.get("reason") == "similar" and shows_look_alike(e):
        title = titles.get(str(e["because_of"]), ("", ""))[0] or str(e["because_of"])
        shares = (f"; text {e['text_share']:.0%} / image {e['image_share']:.0%}"
                  if e.get("text_share") is not None else "")
        return f"like {cut(title, 40)} (your {what}; similarity {float(e.get('similarity') or 0):.2f}{shares})"
    return source_reason(e.get("sources") or ()) + history_note(e, history)


def _titles(rec: Any, ids: list[str]) -> dict[str, tuple[str, str]]:
    from recsys.store.summaries import item_summaries

    return {i: (d["title"], d["category"] or "") for i, d in item_summaries(rec.store.read, ids).items()}


def run_build(store: Any, settings: Any, *, force: bool = False, keep_ranker: bool = False) -> dict[str, Any]:
    from recsys.service import Recommender

    rec = Recommender(settings, store)
    with progress_bar("build") as update:
        report = rec.jobs.build(progress=update, force=force, keep_ranker=keep_ranker)
    for stage, info in report.items():
        err.print(f"{stage}: {_summary(info)}", soft_wrap=True)
    return report


def _summary(info: Any) -> str:
    """One readable line of a build stage's report (nested dicts flattened to key=value)."""
    if not isinstance(info, dict):
        return str(info)
    parts = []
    for key, value in info.items():
        if isinstance(value, dict):
            value = "{" + _summary(value) + "}"
        elif isinstance(value, list | tuple) and len(value) > 5:
            value = f"[{len(value)} entries]"
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def build(force: Annotated[bool, typer.Option(help="redo every stage (and publish a catalogue that lacks most of the "
                                                    "served index's items)")] = False,
          json_out: JsonOpt = False) -> None:
    """Fit the encoder if needed, embed, index, train the ranker. Idempotent: unchanged stages are skipped."""
    from recsys.config import get_settings

    report = run_build(open_store(), get_settings(), force=force)
    if json_out:
        emit_json(report)


def train(json_out: JsonOpt = False) -> None:
    """Train the ranker on the stored events (seeded; a new versioned artifact)."""
    rec = _recommender()
    with progress_bar("train") as update:
        info = rec.jobs.train(progress=update)
    err.print(str(info))
    if json_out:
        emit_json(info)


def evaluate(
    k: Annotated[int, typer.Option("--k", min=1, max=MAX_K, help="list length the metrics are taken at (recall@K, "
                                                                  "NDCG@K...)")] = 20,
    test_events: Annotated[
        Path | None, typer.Option("--test-events", help="events of users unknown to the store")
    ] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="the dataset whose interactions format FILE is in: "
                                            "hm|movielens, or events for a shop's own events file in `recsys import "
                                            "events` columns (with --test-events; not a file format, unlike "
                                            "import's --format)")] = None,
    protocol: Annotated[str | None, typer.Option(help="each shopper's targets: last_day (the last purchase day; "
                                                 "alias hm)|last_interaction (the last event; alias movielens)|auto "
                                                 "(the default: last_day when the shop has purchases); --format "
                                                 "hm|movielens fix their own")] = None,
    part: Annotated[str, typer.Option(help="stored users evaluated: test (report), validation (tune) or all")] = "test",
    mapping: MapOpt = None,
    delimiter: DelimiterOpt = ",",
    event_type: EventTypeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Temporal leave-last-out evaluation against the popular, co-occurrence and content baselines. With
    --test-events FILE --format events, --map, --delimiter and --type read FILE as `recsys import events` does."""
    from recsys.evaluation.own_events import ReadOptions

    if part not in ("test", "validation", "all"):
        raise typer.BadParameter(f"--part must be test, validation or all, not {part!r}")
    options = ReadOptions(parse_map(mapping), delimiter, event_type)
    rec = _recommender()
    with progress_bar("evaluate") as update:
        result = rec.jobs.evaluate(k, test_events=test_events, fmt=fmt, protocol=protocol,
                                   part=None if part == "all" else part, read_options=options, progress=update)
    if not json_out:
        m = result["metrics"]
        err.print(f"users {result['users']}  recall@{k} {m['recall']:.4f}  ndcg {m['ndcg']:.4f}  "
                  f"hit {m['hit_rate']:.4f}  mrr {m['mrr']:.4f}  coverage {m['coverage']:.4f}")
        for name, b in result["baselines"].items():
            err.print(f"  {name:<18} recall {b['recall']:.4f}  ndcg {b['ndcg']:.4f}")
        sl = {name: s.get("recall") for name, s in result["slices"].items() if s.get("recall") is not None}
        err.print("slices (recall): " + "  ".join(f"{name} {v:.4f}" for name, v in sl.items()))
        iv = result.get("intervals") or {}
        diffs = iv.get("differences") or {}
        if diffs:
            best = max(diffs, key=lambda n: result["baselines"].get(n, {}).get("recall") or 0.0)
            d, ci = diffs[best], diffs[best].get("ci")
            spread = f", 95% interval [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else ""  # none below 2 users
            err.print(f"ours - {best}: {d['difference']:+.4f}{spread}")
        if iv.get("note"):
            err.print(f"intervals: {iv['note']}")
        if result.get("caution"):
            err.print(f"caution: {result['caution']}")
        if sys.stdout.isatty():  # piped, stdout still gets the JSON (as it always did)
            err.print("the whole result (slices with their baselines, intervals, timings): add --json")
            return
    emit_json(result)


def _filters(specs: list[str] | None, rec: Any = None) -> Any:
    """The ``--filter`` options as a filter; a category or attribute value no served item has is named with the
    closest known ones (it would only give an empty list). Values match ignoring case and surrounding spaces."""
    from recsys.index import parse_filters

    f = parse_filters(specs or [])
    if rec is None or f is None or (f.categories is None and not f.attributes):
        return f
    meta = rec.index.meta
    unknown = f.unknown_values(meta)
    if unknown:
        said = []
        for u in unknown:
            field = u["field"].removeprefix("attributes.")
            if "closest_fields" in u:  # the attribute itself is unknown
                what, near = f"the attribute {field!r}", [k.removeprefix("attributes.") for k in u["closest_fields"]]
            else:
                what = "the category " if field == "category" else f"the {field} "
                what, near = what + repr(u["value"]), u["closest"]
            said.append(f"no item has {what}" + (f" (closest: {', '.join(near)})" if near else ""))
        known = sorted(meta.vocabulary("category").spellings)
        if any(u["field"] == "category" for u in unknown):
            said.append(f"categories: {', '.join(known[:30])}{' ...' if len(known) > 30 else ''}")
        raise typer.BadParameter("; ".join(said))
    return f


@search_app.command("text")
def search_text(
    query: Annotated[str, typer.Argument(help="what to look for, in words (e.g. 'red summer dress')",
                                         show_default=False)],
    k: KOpt = 20,
    modality: Annotated[str, typer.Option(help="fused|text|image")] = "fused",
    filters: FilterOpt = None,
    mode: Annotated[str | None, typer.Option(
        help="hybrid (keywords and vectors fused; the default with fused vectors)|vector (the default with "
             "--modality text|image)|lexical")] = None,
    lexical_weight: Annotated[float | None, typer.Option(help="hybrid: the keywords' share, 0..1 (0.5)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Items matching a text query: keyword and vector results fused (text->image search with --modality image)."""
    rec = _recommender()
    with _as_served():
        found = rec.search_text(query, k, modality=modality, filter=_filters(filters, rec), mode=mode,
                                lexical_weight=lexical_weight)
    _print(found, json_out, rec)


@search_app.command("image")
def search_image(
    file: Annotated[Path, typer.Argument(help="an image file (JPEG, PNG, WebP...)", show_default=False)],
    k: KOpt = 20,
    modality: Annotated[str, typer.Option(help="image|fused|text")] = "image",
    filters: FilterOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Items that look like the image in FILE."""
    from recsys.errors import BadMedia

    try:
        data = file.read_bytes()
    except OSError as e:
        raise BadMedia(f"{file}: cannot read ({e.strerror}); check the path") from e
    rec = _recommender()
    with _as_served():
        found = rec.search_image(data, k, modality=modality, filter=_filters(filters, rec))
    _print(found, json_out, rec)


def similar(
    item_id: ItemIdArg,
    k: KOpt = 20,
    modality: Annotated[str, typer.Option(help="fused|text|image")] = "fused",
    filters: FilterOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Items similar to ITEM_ID."""
    rec = _recommender()
    with _as_served():
        found = rec.similar(item_id, k, modality=modality, filter=_filters(filters, rec))
    _print(found, json_out, rec)


def recommend(
    user_id: Annotated[str, typer.Argument(help="a user id, as imported (one with no events gets the trending "
                                                "items)", show_default=False)],
    k: KOpt = 20,
    explain: ExplainOpt = False,
    diversity: DiversityOpt = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="item id to leave out (repeatable)")] = None,
    filters: FilterOpt = None,
    now: NowOpt = None,
    buy_again: Annotated[bool, typer.Option("--buy-again", help="the user's own items to buy again instead")] = False,
    boost: BoostOpt = None,
    bury: BuryOpt = None,
    pin: PinOpt = None,
    exploration: ExplorationOpt = 0.0,
    json_out: JsonOpt = False,
) -> None:
    """Personal recommendations for USER_ID (an unknown user gets trending items, tagged as such)."""
    from recsys.serving.rules import ListRules, parse_pairs

    if not user_id.strip() or len(user_id) > MAX_ID or any(ord(c) < 32 for c in user_id):
        raise typer.BadParameter(f"USER_ID {user_id[:40]!r} is not a user id (1 to {MAX_ID} characters, no control "
                                 "characters)")  # as the API's path; '' had served the trending list
    when = parse_now(now)
    if buy_again and (explain or filters or exclude or diversity is not None or boost or bury or pin or exploration):
        raise typer.BadParameter("--buy-again lists the user's own items as they are: it takes --k, --now and --json "
                                 "only, not --explain, --filter, --exclude, --diversity, --boost, --bury, --pin or "
                                 "--exploration (as the API's buy-again route)")
    rec = _recommender()
    if buy_again:
        _buy_again(rec, user_id, k, when, now, json_out)
        return
    rules = ListRules.of(boosts=parse_pairs(boost or (), "--boost", float), bury=bury or (),
                         pins=parse_pairs(pin or (), "--pin", int), exploration=exploration)
    with _as_served():
        results = rec.recommend(user_id, k, filter=_filters(filters, rec), exclude=exclude or (),
                                diversity=diversity, explain=explain, now=when, rules=rules)
    from recsys.serving.reasons import history_state
    from recsys.store.queries import user_event_records

    with rec.store.reading() as c:
        records = user_event_records(c, user_id)
    _print(results, json_out, rec, history=history_state(records, rec.removed_items() | set(exclude or ())))
    warn_unmatched_rules(rec, rules)
    if not records:  # on stderr: a misspelled id must not pass for a personal list
        err.print(f"{no_events(rec.store, user_id)}: these are the trending items everyone gets", style="yellow",
                  soft_wrap=True)


def _buy_again(rec: Any, user_id: str, k: int, when: Any, now: str | None, json_out: bool) -> None:
    """The user's own items to buy again; an empty list says why (with --json on stderr, as plain recommend's note)."""
    with _as_served():
        again = rec.buy_again(user_id, k, now=when)
    why = "" if again else f"nothing to buy again: {nothing_again(rec, user_id, now)}"
    if why and json_out:
        err.print(why, style="yellow", soft_wrap=True, markup=False)
    _print(again, json_out, rec, empty=why)


def register(app: typer.Typer) -> None:
    app.command("build")(build)
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.add_typer(search_app, name="search")
    app.command("similar")(similar)
    app.command("recommend")(recommend)
