"""``recsys.cli.describe.register(app)`` adds ``items describe`` to the ``items`` group of the app it is given (it
once ignored ``app`` and always wrote to the module-level group)."""

from __future__ import annotations

import pytest
import typer

from recsys.cli import data
from recsys.cli.describe import items_describe, register


def _names(group: typer.Typer) -> list[str | None]:
    return [c.name for c in group.registered_commands]


def test_register_adds_describe_to_the_given_apps_items_group() -> None:
    root, items = typer.Typer(), typer.Typer()
    root.add_typer(items, name="items")
    before = _names(data.items_app)
    register(root)
    assert [(c.name, c.callback) for c in items.registered_commands] == [("describe", items_describe)]
    assert _names(data.items_app) == before  # the real root's group is left alone


def test_an_app_without_items_is_said() -> None:
    with pytest.raises(LookupError, match="no `items` group"):
        register(typer.Typer())
