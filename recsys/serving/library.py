"""What a call of :class:`recsys.service.Recommender` from a notebook or a script gets that the server and the CLI
already give around it: ranking under the server's compute-thread cap (:mod:`recsys.serving.threads`: more BLAS
threads sum in another order and change lists), and a plain ``str`` taken as one id or category, not its characters.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import ExitStack, contextmanager
from typing import Any, TypeVar, cast

from recsys.serving.threads import as_served

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_depth = 0  # ranking calls of this process inside the cap now
_held: ExitStack | None = None  # the cap this module put in force (None: none, or the process was capped already)
_controller: Any = None  # threadpoolctl's view of the loaded BLAS and OpenMP pools, made once


def _capped_already(n: int) -> bool:
    """True when torch and every BLAS/OpenMP pool loaded run at most ``n`` threads (the server caps its process
    once, :func:`recsys.serving.threads.limit_compute_threads`): nothing to do, and no ~1.5 ms a call to do it."""
    global _controller
    import faiss  # noqa: F401  (loaded first, as as_served does, so that their pools are seen)
    import torch

    if torch.get_num_threads() > n:
        return False
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return all(c.num_threads <= n for c in _controller.lib_controllers)


@contextmanager
def served_threads(n: int) -> Any:
    """:func:`recsys.serving.threads.as_served` shared by the calls running at once in this process: the first one in
    puts the cap in force, the last one out lifts it (the cap is process-wide: a call leaving must not lift it under
    another one still ranking). ``n`` <= 0: left alone, as in the server."""
    global _depth, _held
    if n <= 0:
        yield
        return
    with _lock:
        if _depth == 0 and not _capped_already(n):
            _held = ExitStack()
            _held.enter_context(as_served(n))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _held is not None:
                held, _held = _held, None
                held.close()


def ranked_as_served(method: F) -> F:
    """A Recommender method that ranks under ``settings.api.compute_threads``, as the API and the CLI rank."""
    @functools.wraps(method)
    def capped(self: Any, *args: Any, **kwargs: Any) -> Any:
        with served_threads(self.settings.api.compute_threads):
            return method(self, *args, **kwargs)

    return cast(F, capped)


def ids(values: Iterable[str] | str | None) -> tuple[str, ...]:
    """Item ids (``exclude``): a plain ``str`` is one id, not its characters."""
    if values is None:
        return ()
    return (values,) if isinstance(values, str) else tuple(values)


def skip(removed: AbstractSet[str], exclude: Iterable[str] | str | None) -> frozenset[str]:
    """The ids a search leaves out: the removed items and the caller's ``exclude`` (see :func:`ids`)."""
    return frozenset(removed).union(ids(exclude))


def examples(values: Mapping[str, float] | Sequence[str] | str) -> Mapping[str, float] | Sequence[str]:
    """``more_like_these`` examples: {id: weight}, ids (weight 1), or one id as a plain ``str``."""
    return {values: 1.0} if isinstance(values, str) else values
