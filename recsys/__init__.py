"""recsys: multimodal recommendation engine.

The objects a notebook or script starts from are importable from here: ``from recsys import Recommender, ItemFilter,
ListRules``. They load on first use, so ``import recsys`` (and the CLI) stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # type checkers and IDEs see the real classes
    from recsys.index.meta import ItemFilter
    from recsys.service import Recommender
    from recsys.serving.rules import ListRules

_EXPORTS = {"Recommender": "recsys.service", "ItemFilter": "recsys.index.meta", "ListRules": "recsys.serving.rules"}

__all__ = ["ItemFilter", "ListRules", "Recommender"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'recsys' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
