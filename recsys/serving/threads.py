"""The compute threads a ranking process uses: the server's cap, shared by the CLI so both rank alike.

Matrix products split over several BLAS threads sum in another order than on one, and a last-bit difference can
swap two near-tied candidates at a cut, which moves later features: the same request ranked by ``recsys
recommend`` (numpy's default threads) and by the server (``api.compute_threads``, 1) gave other orders for 13 of
60 demo users. Requests already run in parallel in the server, so one thread each is also the fast setting there.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


def limit_compute_threads(n: int, done: set[str]) -> None:
    """Cap torch's and FAISS's intra-op threads in this process, for each as soon as it is loaded (the service
    imports them lazily); ``done`` remembers which were capped."""
    if n <= 0:
        return
    changed = False
    for name, setter in (("torch", "set_num_threads"), ("faiss", "omp_set_num_threads")):
        if name not in done and name in sys.modules:
            getattr(sys.modules[name], setter)(n)
            done.add(name)
            changed = True
    if changed:
        try:  # BLAS and OpenMP pools of every native library loaded so far (numpy's OpenBLAS included)
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=n)
        except ImportError:
            pass


@contextmanager
def as_served(n: int) -> Iterator[None]:
    """Compute threads capped as the server caps them (``api.compute_threads``; 0: left alone) for the duration,
    then restored: the CLI's ranking calls, so a shell or a test process keeps its threads for other work."""
    if n <= 0:
        yield
        return
    import faiss  # noqa: F401  (loaded before the cap, so that its OpenMP pool is capped too)
    import torch  # loaded before the cap too: a text search loads it to encode the query, inside the call
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    with threadpool_limits(limits=n):
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)
