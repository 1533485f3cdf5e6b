"""What embed, tag and fit say: bracketed text printed as it is (not taken for rich markup), and items with nothing
to tag them by left untagged and counted."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from sqlalchemy import select
from typer.testing import CliRunner

from recsys.config import Settings, get_settings
from recsys.encoders import embed_catalog, read_vocabulary, tag_items
from recsys.encoders.embed import EmbedReport
from recsys.encoders.fit import FitReport
from recsys.encoders.tagging import TagReport
from recsys.store import Item, ItemTag, Store
from tests.encoders.fixtures import COLOURS, add_item, garment


@functools.cache
def _app() -> typer.Typer:
    """The encoder commands, with ``items tag`` (``register`` adds it to the items group)."""
    from recsys.cli import data
    from recsys.cli.encoders import register

    app = typer.Typer()
    register(app)
    app.add_typer(data.items_app, name="items")
    return app


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliRunner]:
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("recsys.cli.encoders.open_store", lambda: None)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_embed_summary_keeps_brackets(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    report = EmbedReport("recsys-lite@20260101T000000Z", 2, 1, 1, 0, 1, 0.5,
                         errors={"sku-1": "file not found: /data/br/[red]/photo.png", "sku-2": "odd [/x] reason"})
    monkeypatch.setattr("recsys.encoders.embed.embed_catalog", lambda *a, **kw: report)
    out = cli.invoke(_app(), ["embed"])
    assert out.exit_code == 0, out.output
    assert "0.5s [recsys-lite@20260101T000000Z]" in out.output
    assert "sku-1: file not found: /data/br/[red]/photo.png" in out.output  # the right file, not .../br//photo.png
    assert "sku-2: odd [/x] reason" in out.output  # a closing tag raised MarkupError after the work was done


def test_tag_summary_keeps_brackets_and_counts_the_untagged(cli: CliRunner, monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("colour: red, blue\n")
    monkeypatch.setattr("recsys.encoders.tagging.tag_items",
                        lambda *a, **kw: TagReport("recsys-lite@v1", 3, 1, 2, untagged=1))
    out = cli.invoke(_app(), ["items", "tag", "--vocabulary", str(vocab)])
    assert out.exit_code == 0, out.output
    assert "2 tags on 3 items over 1 facets; 1 items with neither text nor image left untagged [recsys-lite@v1]" \
        in out.output


def test_fit_summary_says_the_recall_was_not_measured(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    report = FitReport("v1", "recsys-lite@v1", "/p", 6, 1, None, None, 0.1, 0.2,
                       recall_note="not measured: 1 held-out pairs, and recall@10 of 10 or fewer is 1.0")
    monkeypatch.setattr("recsys.encoders.fit.fit_encoder", lambda *a, **kw: report)
    out = cli.invoke(_app(), ["encoder", "fit"])
    assert out.exit_code == 0, out.output
    assert "6 training pairs, 1 held out; held-out recall@10 not measured: 1 held-out pairs" in out.output
    assert "1.000" not in out.output


def test_fit_waits_for_a_running_build(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fit during a build would switch heads that the build's own replace when it finishes: it takes turns."""
    from filelock import FileLock

    from recsys.jobs import jobs_lock

    held: list[bool] = []

    def fit(*a: object, **kw: object) -> FitReport:
        lock = FileLock(str(get_settings().home / "jobs.lock"))
        try:
            lock.acquire(timeout=0)
            lock.release()
            held.append(False)
        except TimeoutError:
            held.append(True)
        return FitReport("v1", "recsys-lite@v1", "/p", 60, 10, 0.5, 0.5, 0.1, 0.2)

    monkeypatch.setattr("recsys.encoders.fit.fit_encoder", fit)
    assert cli.invoke(_app(), ["encoder", "fit"]).exit_code == 0
    assert held == [True]  # the build's lock, held by the fit meanwhile
    with jobs_lock(get_settings()):  # and released after it
        pass


def test_items_with_neither_text_nor_image_get_no_tags(store: Store, tiny: Settings, tmp_path: Path) -> None:
    add_item(store, "photo", "", media=[("image", garment(tmp_path / "a.jpg", COLOURS["red"]))])
    add_item(store, "words", "a blue shirt")
    add_item(store, "empty", "")
    embed_catalog(store, tiny)
    with store.session() as s:  # tags an earlier version gave it, and one set by hand
        pk = s.scalars(select(Item.id).where(Item.external_id == "empty")).one()
        s.add_all([ItemTag(item_id=pk, facet="colour", label="red", score=0.5, source="zero-shot:old@v0"),
                   ItemTag(item_id=pk, facet="colour", label="blue", score=1.0, source="manual")])
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("colour: red, blue, green\ntype: shirt, dress\n")
    report = tag_items(store, tiny, read_vocabulary(vocab))
    with store.session() as s:
        tags = s.execute(select(Item.external_id, ItemTag.source).join(Item, Item.id == ItemTag.item_id)).all()
    assert not [t for t in tags if t[0] == "empty" and t[1].startswith("zero-shot:")]  # were label 0 of each facet
    assert ("empty", "manual") in tags and {i for i, _ in tags} == {"photo", "words", "empty"}
    assert (report.items, report.tags, report.untagged) == (3, 2 * 2, 1)
