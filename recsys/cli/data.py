"""Data commands: config, db, import, stats, items."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from recsys.cli._common import (
    DelimiterOpt,
    EventTypeOpt,
    ItemIdArg,
    ItemIdsArg,
    JsonOpt,
    MapOpt,
    emit_json,
    err,
    interrupted_status,
    open_store,
    parse_map,
    progress_bar,
)

db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
import_app = typer.Typer(help="Import datasets and files into the store.", no_args_is_help=True)
items_app = typer.Typer(help="Inspect and manage catalogue items.", no_args_is_help=True)
DirArg = Annotated[Path, typer.Argument(help="the dataset's directory, in the layout above", show_default=False)]


def config(json_out: JsonOpt = False) -> None:
    """Print the effective settings (environment RECSYS_*; database and Redis passwords hidden)."""
    from recsys.config import get_settings, without_password

    s = get_settings()
    data = json.loads(s.model_dump_json())
    data["database_url"] = without_password(s.db_url)
    data["api"]["rate_limit_storage"] = without_password(s.api.rate_limit_storage)
    data["home"] = str(s.home.resolve())
    if json_out:
        emit_json(data)
    else:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="a migration id, or head (the newest)")] = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from recsys.store import Store

    store = Store.open(upgrade=False)
    store.upgrade(revision)
    typer.echo(f"database at {store.current_revision()}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="a migration id, or base (before the first)")] = "base",
                 yes: Annotated[bool, typer.Option("--yes", help="drop the stored data it names")] = False) -> None:
    """Revert migrations down to REVISION (default: base, which drops every table). Tables and columns that hold
    data are named first, and nothing is dropped without --yes: upgrading again does not bring them back."""
    from recsys.errors import ValidationFailed
    from recsys.store import Store
    from recsys.store.schema import check_known, dropped_by_downgrade

    store = Store.open(upgrade=False)
    check_known(store, store.current_revision(), revision, "down")
    lost = dropped_by_downgrade(store, revision)
    if lost and not yes:
        raise ValidationFailed(f"a downgrade to {revision} drops stored data: {'; '.join(lost)}. Nothing was "
                               "changed; back the database up, then run it again with --yes")
    store.downgrade(revision)
    typer.echo(f"database at {store.current_revision() or 'base'}" + (f" (dropped {'; '.join(lost)})" if lost else ""))


@db_app.command("current")
def db_current() -> None:
    """Print the store's schema revision (a migration id; "base" when it has no tables), without migrating it."""
    from recsys.store.schema import check_stamped

    store = open_store(upgrade=False)
    current = store.current_revision()
    check_stamped(store, current)  # tables without a revision are not "base": say so, and what to do
    typer.echo(current or "base")


@db_app.command("stamp")
def db_stamp(revision: Annotated[str, typer.Argument(help="the migration id the tables are at, or head")] = "head"
             ) -> None:
    """Record REVISION as the schema of a database whose tables exist but whose revision is missing (restored
    without its alembic_version table). Refused unless its tables, columns and indexes are that revision's;
    nothing else is changed."""
    store = open_store(upgrade=False)
    typer.echo(f"database stamped at {store.stamp(revision)}")


def _run_import(source: str, path: Path, fmt: str = "auto", mapping: list[str] | None = None,
                event_type: str | None = None, json_out: bool = False, delimiter: str = ",") -> None:
    from recsys.store.importers import run_import

    pairs = parse_map(mapping)
    store = open_store(create=True)
    try:
        with progress_bar(f"import {source}") as update:
            report = run_import(store, source, path, fmt=fmt, mapping=pairs, event_type=event_type, progress=update,
                                delimiter=delimiter)
    except KeyboardInterrupt as e:  # the import's one transaction is rolled back: say so, or a user cannot tell
        err.print("interrupted; nothing was imported (an import is one transaction): run it again", markup=False)
        raise typer.Exit(interrupted_status(e)) from None
    for table, c in report.tables.items():
        again = f" (repeated ids: {c.repeated}, the last row of each stored)" if c.repeated else ""
        unknown = f" ({c.unknown_items} naming items not imported yet)" if c.unknown_items else ""
        err.print(f"{table}: read {c.read}, inserted {c.inserted}, updated {c.updated}, unchanged {c.unchanged}, "
                  f"skipped {c.skipped}{unknown}{again}")
    for note in report.notes:
        err.print(f"  note {note}")
    for b in report.bad_rows[:20]:
        err.print(f"  skipped {b.file}:{b.line}: {b.reason}")
    if report.bad_rows_total > 20:  # the report keeps a bounded sample; the total counts every skipped row
        err.print(f"  ... and {report.bad_rows_total - 20} more (see the report in the data directory)")
    if json_out:
        emit_json(report.to_dict())


@import_app.command("hm")
def import_hm(directory: DirArg, json_out: JsonOpt = False) -> None:
    """H&M layout: articles.csv, images/<3 digits>/<article_id>.jpg, transactions.csv, customers.csv."""
    _run_import("hm", directory, json_out=json_out)


@import_app.command("movielens")
def import_movielens(directory: DirArg, json_out: JsonOpt = False) -> None:
    """MovieLens-100k layout: u.item, u.data, u.user, posters/<item_id>.jpg, details.json (optional)."""
    _run_import("movielens", directory, json_out=json_out)


FormatOpt = Annotated[str, typer.Option("--format", help="the file format: auto (from the extension)|csv|tsv|jsonl|"
                                                       "parquet (not a dataset name, unlike evaluate's --format)")]
FileArg = Annotated[Path, typer.Argument(help="the file to import (.gz: read through gzip)", show_default=False)]


@import_app.command("items")
def import_items(file: FileArg, fmt: FormatOpt = "auto", mapping: MapOpt = None, delimiter: DelimiterOpt = ",",
                 json_out: JsonOpt = False) -> None:
    """Items from CSV/TSV/JSONL/Parquet, gzip-compressed or not (columns: item_id, title, description, category,
    price, in_stock, image, video; others become attributes)."""
    _run_import("items", file, fmt, mapping, json_out=json_out, delimiter=delimiter)


@import_app.command("users")
def import_users(file: FileArg, fmt: FormatOpt = "auto", mapping: MapOpt = None, delimiter: DelimiterOpt = ",",
                 json_out: JsonOpt = False) -> None:
    """Users (user_id; other columns become attributes)."""
    _run_import("users", file, fmt, mapping, json_out=json_out, delimiter=delimiter)


@import_app.command("events")
def import_events(file: FileArg, fmt: FormatOpt = "auto", mapping: MapOpt = None,
                  event_type: EventTypeOpt = None,
                  delimiter: DelimiterOpt = ",", json_out: JsonOpt = False) -> None:
    """Events (user_id, item_id, type, value, timestamp, event_id)."""
    _run_import("events", file, fmt, mapping, event_type, json_out=json_out, delimiter=delimiter)


def stats(json_out: JsonOpt = False) -> None:
    """Counts of items, items with an image, users, events and events by type."""
    from recsys.store.queries import stats as store_stats

    store = open_store()
    with store.session() as s:
        data = store_stats(s)
    if json_out:
        emit_json(data)
    else:
        for k, v in data.items():
            if isinstance(v, dict):  # events_by_type: one aligned row per type, not a Python dict
                typer.echo(f"{k}:")
                width = max((len(str(t)) for t in v), default=0)
                for t, n in v.items():
                    typer.echo(f"  {t:<{width}} {n:>10}")
            else:
                typer.echo(f"{k}: {v}")


@items_app.command("show")
def items_show(item_id: ItemIdArg, json_out: JsonOpt = False) -> None:
    """One item with its media (and the reason any medium failed), tags and flags."""
    from recsys.store.items import item_details

    store = open_store()
    with store.session() as s:
        data = item_details(s, item_id)
    if json_out:
        emit_json(data)
    else:
        typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))  # text as written, any script


# per action: the flag it sets, and its outcome words (set now, set already)
_ACTIONS = {"hide": ("hidden", True, "hidden", "already hidden"),
            "unhide": ("hidden", False, "unhidden", "already shown"),
            "delete": ("deleted", True, "deleted", "already deleted")}


def _set_flag(action: str, item_ids: list[str], json_out: bool) -> None:
    """Set the action's flag and say per outcome what happened (counting only items that changed). Exit 1 when an
    unhide leaves a deleted item unserved (it stays deleted); unknown ids change nothing (exit 2, raised)."""
    from recsys.store.items import change_flags, deleted_message

    flag, value, done, already = _ACTIONS[action]
    store = open_store()
    with store.session() as s:
        out = change_flags(s, item_ids, **{flag: value})
    gone = set(out.still_deleted)
    groups = {done: [i for i in out.changed if i not in gone], already: [i for i in out.unchanged if i not in gone],
              f"{done} but still deleted": [i for i in out.changed if i in gone],
              "not hidden but deleted": [i for i in out.unchanged if i in gone]}
    missing = _not_served([i for i in item_ids if i not in gone]) if action == "unhide" else []
    if json_out:
        facts = {"action": action, "updated": len(out.changed), "changed": out.changed, "unchanged": out.unchanged}
        emit_json(facts | ({"still_deleted": out.still_deleted, "not_in_served_index": missing}
                           if action == "unhide" else {}))
    else:
        said = [f"{len(ids)} {what}" + (f" ({', '.join(map(repr, ids[:3]))}{' ...' if len(ids) > 3 else ''})"
                                        if what != done else "") for what, ids in groups.items() if ids]
        typer.echo(f"{len(out.changed)} item(s) updated: {', '.join(said)}")
    if missing:  # releases before 2026-12-06 left hidden items out of the index: unhiding cannot bring them back
        err.print(f"note: {len(missing)} of them not in the served index (e.g. {missing[0]!r}: hidden under an "
                  "older release, which left hidden items out, or not built yet); `recsys index build` adds them",
                  markup=False)
    if out.still_deleted:  # shown or not, a deleted item is never served: say so, and what brings it back
        more = f" (and {len(out.still_deleted) - 1} more deleted)" if len(out.still_deleted) > 1 else ""
        err.print(f"not served: {deleted_message(out.still_deleted[0])}{more}", markup=False)
        raise typer.Exit(1)


@items_app.command("hide")
def items_hide(item_ids: ItemIdsArg, json_out: JsonOpt = False) -> None:
    """Hide items: no query returns them from now on (until unhidden). Items already hidden are counted apart."""
    _set_flag("hide", item_ids, json_out)


@items_app.command("unhide")
def items_unhide(item_ids: ItemIdsArg, json_out: JsonOpt = False) -> None:
    """Show hidden items again: queries return them from now on. A deleted item stays deleted: it is named, and the
    exit status is 1 (a PUT of the item, or an import with its title, brings it back)."""
    _set_flag("unhide", item_ids, json_out)


def _not_served(item_ids: list[str]) -> list[str]:
    """Those of ``item_ids`` that the served generation does not hold (none when nothing is served yet)."""
    from recsys.config import get_settings
    from recsys.index import index_root
    from recsys.index.layout import current_id
    from recsys.index.store_match import served_ids

    root = index_root(get_settings())
    gid = current_id(root)
    served = served_ids(root, gid) if gid is not None else None
    if served is None:
        return []
    held = set(served.tolist())
    return [i for i in dict.fromkeys(item_ids) if i not in held]


@items_app.command("delete")
def items_delete(item_ids: ItemIdsArg, json_out: JsonOpt = False) -> None:
    """Delete items (soft: flagged at once, dropped from the index at the next build; events kept). Items already
    deleted are counted apart."""
    _set_flag("delete", item_ids, json_out)
