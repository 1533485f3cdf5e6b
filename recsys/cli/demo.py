"""`recsys demo`: generate the offline demo catalogue and users, import them, build, and serve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from recsys.cli._common import err, open_store, progress_bar
from recsys.errors import ConfigError


def demo(
    items: Annotated[int, typer.Option(min=1, help="catalogue size")] = 2000,
    users: Annotated[int, typer.Option(min=1, help="number of users")] = 300,
    seed: Annotated[int, typer.Option(help="random seed of the generated catalogue and users")] = 0,
    build: Annotated[bool, typer.Option(help="fit, embed, index and train after importing")] = True,
    serve: Annotated[bool, typer.Option(help="serve the API and explorer afterwards")] = True,
    port: Annotated[int, typer.Option(help="port of the explorer and API on 127.0.0.1")] = 8000,
    reimport: Annotated[bool, typer.Option(help="import the demo data again (items you deleted or hid come back)")]
    = False,
    force: Annotated[bool, typer.Option(help="add the demo to a store that holds other data")] = False,
) -> None:
    """Offline demo: a generated catalogue (rendered images + text) and users with tastes, end to end."""
    from recsys.config import get_settings

    settings = get_settings()
    if serve:
        from recsys.cli.serve import check_port

        check_port("127.0.0.1", port)  # before minutes of building, not after
    out = settings.home / "demo-data"
    store = open_store(create=True)
    marker, spec = out / ".imported", f"items={items} users={users} seed={seed}\n"
    if not reimport and marker.is_file() and marker.read_text() == spec:
        # imported before: a new import would undo the deletions and hides made since (a record brings an item back)
        typer.echo(f"demo data already imported ({spec.strip()}; deletions, hides and events since are kept; "
                   "--reimport imports it again)")
    else:
        mixed = _refuse_foreign(store, settings.home, out, force, spec)
        # mixed in (--force): the events get ids of their own, or those equal to the earlier data's would be refused
        _generate_and_import(store, settings, out, items, users, seed,
                             event_tag=f"s{seed}i{items}u{users}-" if mixed else "")
        marker.write_text(spec)
    if build:
        from recsys.cli.pipeline import run_build

        run_build(store, settings, keep_ranker=True)  # a like in the explorer since the last run: no retrain
    if serve:
        from recsys.cli.serve import run_serve

        run_serve(settings, host="127.0.0.1", port=port, auth=False, banner=True, log_format="text")  # read by a person


def _refuse_foreign(store: Any, home: Path, out: Path, force: bool, spec: str) -> bool:
    """The demo goes into a store of its own: mixed into imported data it would add 2,000 made-up items and 300
    users to that catalogue and to its ranker's training; a demo of another size or seed would overwrite the
    earlier one's first items and merge both demos' events. With ``force``: whether it is mixed in (True)."""
    from recsys.store.queries import stats

    marker = out / ".imported"
    earlier = marker.read_text().strip() if marker.is_file() else None
    if force:
        if earlier:
            return earlier != spec.strip()
        with store.session() as s:
            held = stats(s)
        return not (out / "items.jsonl").is_file() and bool(held.get("items") or held.get("events"))
    if earlier and earlier != spec.strip():
        raise ConfigError(f"{home} holds a demo made with {earlier}, not {spec.strip()}: a second one would mix "
                          "into it. Run it in a directory of its own (`RECSYS_HOME=./demo-small recsys demo ...`), "
                          "or `recsys demo --force` to import it on top")
    if (out / "items.jsonl").is_file():  # the demo's own data (earlier runs wrote no marker)
        return False
    with store.session() as s:
        held = stats(s)
    if held.get("items") or held.get("events"):
        raise ConfigError(f"{home} already holds a store the demo did not write ({held.get('items', 0):,} items, "
                          f"{held.get('events', 0):,} events): run the demo in a directory of its own "
                          "(`RECSYS_HOME=./demo-home make demo`, or `unset RECSYS_HOME` if it was exported for other "
                          "data), or run `.venv/bin/recsys demo --force` to add it to this store")
    return False


def _generate_and_import(store: Any, settings: Any, out: Path, items: int, users: int, seed: int,
                         event_tag: str = "") -> None:
    from recsys.demo import generate_demo
    from recsys.store.importers import run_import
    from recsys.store.queries import stats

    summary = generate_demo(out, n_items=items, n_users=users, seed=seed, event_tag=event_tag)
    err.print(f"generated demo data in {out}: {summary}")
    with progress_bar("import demo") as update:
        for kind, name in (("items", "items.jsonl"), ("users", "users.jsonl"), ("events", "events.jsonl")):
            run_import(store, kind, out / name, settings=settings, progress=update)
    with store.session() as s:
        st = stats(s)
    typer.echo("demo store: " + ", ".join(f"{k}={v}" for k, v in st.items() if k != "events_by_type"))
    typer.echo("events by type: " + ", ".join(f"{k}={v}" for k, v in st["events_by_type"].items()))
