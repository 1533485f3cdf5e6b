"""`recsys demo`: generate the offline demo catalogue and users, import them, build, and serve."""

from __future__ import annotations

from typing import Annotated

import typer

from recsys.cli._common import err, open_store, progress_bar


def demo(
    items: Annotated[int, typer.Option(help="catalogue size")] = 2000,
    users: Annotated[int, typer.Option(help="number of users")] = 300,
    seed: int = 0,
    build: Annotated[bool, typer.Option(help="fit, embed, index and train after importing")] = True,
    serve: Annotated[bool, typer.Option(help="serve the API and explorer afterwards")] = True,
    port: int = 8000,
) -> None:
    """Offline demo: a generated catalogue (rendered images + text) and users with tastes, end to end."""
    from recsys.config import get_settings
    from recsys.demo import generate_demo
    from recsys.store.importers import run_import
    from recsys.store.queries import stats

    settings = get_settings()
    if serve:
        from recsys.cli.serve import check_port

        check_port("127.0.0.1", port)  # before minutes of building, not after
    out = settings.home / "demo-data"
    summary = generate_demo(out, n_items=items, n_users=users, seed=seed)
    err.print(f"generated demo data in {out}: {summary}")
    store = open_store(create=True)
    with progress_bar("import demo") as update:
        for kind, name in (("items", "items.jsonl"), ("users", "users.jsonl"), ("events", "events.jsonl")):
            run_import(store, kind, out / name, settings=settings, progress=update)
    with store.session() as s:
        st = stats(s)
    typer.echo("demo store: " + ", ".join(f"{k}={v}" for k, v in st.items() if k != "events_by_type"))
    typer.echo("events by type: " + ", ".join(f"{k}={v}" for k, v in st["events_by_type"].items()))
    if build:
        from recsys.cli.pipeline import run_build

        run_build(store, settings, keep_ranker=True)  # a like in the explorer since the last run: no retrain
    if serve:
        from recsys.cli.serve import run_serve

        run_serve(settings, host="127.0.0.1", port=port, auth=False, banner=True, log_format="text")  # read by a person
