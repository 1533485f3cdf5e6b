"""Alembic environment: metadata comes from the package; the engine from recsys's Store (or the URL)."""

from __future__ import annotations

import re
from typing import Any

from alembic import context
from sqlalchemy import engine_from_config, pool

from recsys.store.tables import Base

config = context.config
target_metadata = Base.metadata

RAW_TABLES = ("items_fts", "item_search")
"""The lexical index, made by raw SQL (0004, 0006, 0010) and kept by triggers, so absent from the models: SQLite's
FTS5 table ``items_fts`` (and its shadow tables ``items_fts_data``, ``_idx``, ``_content``, ``_docsize``,
``_config``), PostgreSQL's ``item_search`` (and its GIN index). Left out of autogenerate and ``alembic check``, which
would otherwise propose dropping them (and every item write would then fail on the triggers that name them)."""


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return not any(table == t or str(table).startswith(f"{t}_") for t in RAW_TABLES)


def number_revision(ctx: Any, revision: Any, directives: list[Any]) -> None:
    """A new revision gets the next number (``0012_name.py`` by alembic.ini's file_template), not alembic's random
    12-hex id; a ``--rev-id`` given is kept."""
    head = context.script.get_current_head()
    for script in directives:
        if re.fullmatch(r"[0-9a-f]{12}", script.rev_id or "") and head and head.isdigit():
            script.rev_id = f"{int(head) + 1:04d}"


SETTINGS: dict[str, Any] = {"target_metadata": target_metadata, "render_as_batch": True,
                            "include_object": include_object, "process_revision_directives": number_revision}


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **SETTINGS)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from recsys.config import get_settings

        url = config.get_main_option("sqlalchemy.url") or get_settings().db_url
        engine = engine_from_config({"sqlalchemy.url": url}, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        # transactional_ddl: set by recsys's Store on SQLite, whose migration engine keeps DDL in the transaction
        context.configure(connection=connection, transactional_ddl=config.attributes.get("transactional_ddl"),
                          **SETTINGS)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
