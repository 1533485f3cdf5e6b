"""``recsys embed --engine ray``: the embedding job on Ray Data, same vectors as the local engine.

The driver reads the catalogue and the item-vector cache exactly as :func:`~recsys.encoders.embed.embed_catalog`
does; only the items missing from the cache become a ``ray.data.from_items`` dataset of (row, item record). An actor
pool (``map_batches`` with a callable class) builds the encoder once per worker with
:func:`~recsys.encoders.encoder.get_encoder` and runs :func:`~recsys.encoders.embed.encode_items` on each batch, so
the vectors are those of the local engine. The driver streams the results back, writes them to the same vector cache,
records media status on ``ItemMedia`` and writes the snapshot that :func:`~recsys.encoders.vectors.load_item_vectors`
reads.

Ray is an optional dependency (``pip install 'recsys[ray]'``) and is imported only when this engine runs.

On one machine::

    recsys embed --engine ray                       # starts a local Ray (all cores)

On a real cluster (``ray start --head`` on the head node, ``ray start --address=head:6379`` on each worker)::

    recsys embed --engine ray --ray-address ray://head:10001 --ray-workers 8

Requirements on a cluster: every node has recsys installed with the same encoder weights, and ``RECSYS_HOME`` (the
presets, fitted heads and feature caches) lives on a filesystem mounted at the same path on every node; media URIs
must be readable from every node. With ``RECSYS_ENCODER__DEVICE=cuda`` each actor asks Ray for one GPU (a pool of at
most one actor per GPU; a cluster without GPUs is refused up front, as no actor could ever start). The driver writes
the database and the vector cache; workers only read media and write their tower-feature caches. A worker's failure
is an EncoderError naming its cause; the batches finished before it are cached, so a rerun resumes. A worker that
cannot import recsys, or builds another encoder than the driver (``RECSYS_HOME`` not shared), fails before it
encodes anything, with the requirement it misses: a rerun would fail the same way. An address this machine
cannot use (not one of the forms Ray takes, a ``ray://`` one without the Ray Client installed, or one where nothing
answers within :data:`CONNECT_TIMEOUT_S`) is a ConfigError before any work starts: Ray itself retries an unreachable
head for minutes. A Ray that recsys starts or joins is kept quiet: the run prints recsys' own progress lines.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

from recsys.config import Settings
from recsys.encoders.cache import VectorCache
from recsys.encoders.embed import (
    EmbedReport,
    MediaStatus,
    Progress,
    finish_embed,
    item_key,
    key_id,
    record_status,
    tally,
    to_encode,
    vector_cache,
)
from recsys.encoders.encoder import TowerEncoder, get_encoder
from recsys.encoders.media import MediaFinder
from recsys.encoders.text import ItemRecord
from recsys.errors import ConfigError, EncoderError
from recsys.store import Store

log = logging.getLogger(__name__)

BATCH = 64
"""Items per Ray batch (one ``encode_items`` call on a worker)."""


def _to_json(item: ItemRecord) -> str:
    return json.dumps(asdict(item), default=str)


def _from_json(s: str) -> ItemRecord:
    d = json.loads(s)
    d["media"] = tuple((k, u) for k, u in d.get("media", ()))
    return ItemRecord(**d)


def wants_gpu(settings: Settings) -> bool:
    return str(settings.encoder.device).lower().startswith("cuda")


class BatchFailed(RuntimeError):
    """A worker's failure on one batch, naming its items (Ray hands the driver only a traceback text)."""


class WrongEncoder(RuntimeError):
    """A worker built another encoder than the driver: its RECSYS_HOME is not the driver's."""


class ItemEmbedder:
    """Ray Data callable class: one encoder per actor, ``encode_items`` per batch."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.encoder = get_encoder(settings)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from recsys.encoders.embed import encode_items

        # the driver's encoder id, checked before encoding: a worker that cannot read the driver's RECSYS_HOME builds
        # an unfitted encoder (found from the batches' results, the whole dataset was encoded for nothing)
        expect = {str(x) for x in batch.get("expect", ())} - {self.encoder.id}
        if expect:
            raise WrongEncoder(f"Ray workers built encoder {self.encoder.id}, the driver {min(expect)}")
        items = [_from_json(str(s)) for s in batch["record"]]
        try:
            text, image, has_image, status = encode_items(self.encoder, items, self.settings)
        except Exception as e:
            ids = [it.item_id for it in items]
            shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
            raise BatchFailed(f"items {shown}: {type(e).__name__}: {e}") from e
        # (uri, kind, reason) per use: a file that is one item's video and another's image has a status for each
        per_item = [json.dumps([(u, k, status.get((u, k))) for k, u in it.media]) for it in items]
        return {"row": np.asarray(batch["row"], np.int64), "text": text, "image": image,
                "has_image": has_image, "status": np.asarray(per_item, dtype=object)}


NEEDS_RAY = "the ray engine needs Ray: pip install 'recsys[ray]' (ray[data]>=2.9)"
CONNECT_TIMEOUT_S = 10.0
"""Seconds a Ray address has to accept a connection before the embed is refused (see :func:`check_address`)."""


FORMS = ("auto, local, HOST:PORT (the head's GCS port, 6379 by default) or ray://HOST:PORT (the Ray Client, port "
         "10001 by default)")
"""The addresses Ray takes, as the refusals say them."""


def split_address(target: str) -> tuple[str, int, bool] | None:
    """(host, port, is a Ray Client address) of ``HOST:PORT`` or ``ray://HOST:PORT``, the forms Ray takes besides
    ``auto`` and ``local``; None for anything else (a bare host, another scheme, a path)."""
    client = target.startswith("ray://")
    host, sep, port = target.removeprefix("ray://").rpartition(":")
    if host.startswith("[") and host.endswith("]"):  # [::1]:6379
        host = host[1:-1]
    elif ":" in host:  # a bare IPv6 address, or a second port
        return None
    if not sep or not host or "/" in host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port), client


def _refusal(where: str, target: str) -> str:
    if target.startswith(("http://", "https://")):
        return (f"{where} is an HTTP address (the Ray dashboard's or its job server's, port 8265 by default), not the "
                f"cluster's: give {FORMS}")
    rest = target.removeprefix("ray://")
    if "://" not in rest and ":" not in rest.strip("[]"):
        return f"{where} has no port (Ray takes none by default): give {FORMS}"
    return f"{where} is not a Ray address: give {FORMS}"


def check_address(address: str | None) -> None:
    """Refuse a Ray address this machine cannot use, before any work: one that is not of a form Ray takes (an
    ``http://`` one is the dashboard's; a bare host has no port), a ``ray://`` one when the Ray Client is not
    installed (the ``ray`` extra brings Ray Data only), or one where nothing accepts a TCP connection within
    :data:`CONNECT_TIMEOUT_S`. None, ``auto`` and ``local`` (a local Ray, or a cluster this node joined) are left to
    ``ray.init``, as is an address that answers. ``RAY_ADDRESS`` stands in for None and ``auto``, as in Ray."""
    target = os.environ.get("RAY_ADDRESS") if address in (None, "auto") else address
    if not target or target in ("auto", "local"):
        return
    where = f"--ray-address {target}" if target == address else f"RAY_ADDRESS={target}"
    parts = split_address(target)
    if parts is None:
        raise ConfigError(_refusal(where, target))
    host, port, client = parts
    if importlib.util.find_spec("ray") is None:
        raise ConfigError(NEEDS_RAY)
    if client and importlib.util.find_spec("grpc") is None:
        version = importlib.metadata.version("ray")
        raise ConfigError(f"{where} is a Ray Client address, but the Ray Client is not installed here (the ray extra "
                          f'brings Ray Data only): pip install "ray[client]=={version}" (the version of ray '
                          "installed), or run the embed on a node of the cluster with --ray-address auto")
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:  # refused, unknown host, no route, timed out (TimeoutError is an OSError)
        why = f"no answer within {CONNECT_TIMEOUT_S:g} s" if isinstance(e, TimeoutError) else \
            (e.strerror or type(e).__name__)
        raise ConfigError(f"cannot reach the Ray cluster at {where} ({host}:{port}: {why}): check the host and "
                          "port (ray:// addresses take the head's client port, 10001 by default; HOST:PORT its GCS "
                          "port, 6379), that the head runs (`ray status` on it) and that no firewall blocks the port; "
                          "nothing was embedded") from None


@contextlib.contextmanager
def _driver_log_level() -> Iterator[None]:
    """Ray's C++ core worker in this process logs to stderr at ERROR level, and says on every successful run that
    Ray Data's actors have constructor arguments in the object store. It reads ``RAY_BACKEND_LOG_LEVEL`` in
    ``ray.init``: fatal here unless the user set it (a local Ray started here inherits it: set it to info to debug
    one). Ray says it took the level in one INFO line; stderr is not held to hide it, so that a crash inside
    ``ray.init`` still shows its last words."""
    if "RAY_BACKEND_LOG_LEVEL" in os.environ:
        yield
        return
    os.environ["RAY_BACKEND_LOG_LEVEL"] = "fatal"
    try:
        yield
    finally:
        os.environ.pop("RAY_BACKEND_LOG_LEVEL", None)


def _quiet_ray_data() -> None:
    """Ray Data's console: INFO lines on each execution, and with stdout not a terminal a progress block every 10 s
    (tqdm bars on a terminal), beside recsys' own progress. Warnings and errors stay; its log files keep everything.
    A logging config of the user's (``RAY_DATA_LOGGING_CONFIG``) is left as it is."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    if os.environ.get("RAY_DATA_LOGGING_CONFIG"):
        return
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled" warning
    for handler in logging.getLogger("ray.data").handlers:
        if handler.get_name() == "console":
            handler.setLevel(max(handler.level, logging.WARNING))


def _ensure_ray(address: str | None) -> Any:
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConfigError(NEEDS_RAY) from e
    if not ray.is_initialized():
        try:
            with _driver_log_level():  # Ray's INFO lines ("Started a local Ray instance") off, warnings kept
                ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as e:  # whatever Ray raises for a cluster it cannot join: one message, not a traceback
            why = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            at = f"at --ray-address {address}" if address else "(a local Ray)"
            raise ConfigError(f"Ray could not start or connect {at}: {type(e).__name__}: {why}; check the address, "
                              "that the cluster runs the Ray and Python versions of this machine, and its logs; "
                              "nothing was embedded") from e
        _quiet_ray_data()
    return ray


def pool_size(ray: Any, settings: Settings, workers: int) -> int:
    """Actors in the pool: ``workers``, at most one per GPU of the cluster when the device is CUDA. A CUDA device on
    a cluster without GPUs is refused here: each actor would wait for a GPU for ever."""
    if not wants_gpu(settings):
        return max(1, workers)
    gpus = int(float(ray.cluster_resources().get("GPU", 0)))
    if gpus < 1:
        raise ConfigError(f"RECSYS_ENCODER__DEVICE is {settings.encoder.device!r} but the Ray cluster has no GPU "
                          "(ray.cluster_resources() lists none), so no worker could ever start: set "
                          "RECSYS_ENCODER__DEVICE=cpu, or add GPU nodes to the cluster")
    if gpus < workers:
        log.warning("embed (ray): %d workers asked, the cluster has %d GPU(s): using %d", workers, gpus, gpus)
    return max(1, min(workers, gpus))


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RAISED = re.compile(r"^((?:\w+\.)*\w+): (.+)$")


def worker_cause(e: BaseException) -> str:
    """What a failed Ray task raised, from the traceback text Ray gives the driver (the exception itself stays on
    the worker): the last exception line that is not Ray's own wrapper, without colour codes."""
    text = _ANSI.sub("", str(e))
    raised = [(m.group(1), m.group(2)) for m in map(_RAISED.match, text.splitlines())
              if m and not m.group(1).startswith("ray.")]
    if not raised:
        return f"{type(e).__name__}: {text.strip().splitlines()[0] if text.strip() else ''}"
    name, message = raised[-1]
    return message if name.endswith("BatchFailed") else f"{name.rsplit('.', 1)[-1]}: {message}"


def _worker_failed(e: BaseException, done: int, total: int) -> EncoderError | ConfigError:
    """The driver's error for a failed Ray task or actor. A worker that cannot import a module (recsys itself, or
    one of its extras) or that built another encoder fails the same way on every rerun: its message says what the
    node lacks, not to rerun."""
    cause = worker_cause(e)
    cached = f"the {done} of {total} items of the finished batches are cached"
    if cause.startswith(WrongEncoder.__name__):
        said = cause.removeprefix(f"{WrongEncoder.__name__}: ")
        return ConfigError(f"{said}: check that RECSYS_HOME is shared by every node, mounted at the same path; its "
                           f"workers refuse to encode, so rerunning will not help until then ({cached})")
    missing = re.search(r"ModuleNotFoundError: No module named '([\w.]+)'", cause)
    if missing:
        what = "recsys" if missing.group(1).split(".")[0] == "recsys" else f"{missing.group(1)}, which recsys needs,"
        return EncoderError(f"a Ray worker cannot import {what} ({cause}): every Ray node needs recsys installed, "
                            "the same version with the same extras as this machine (pip install -e \".[ray]\", as "
                            f"here); rerunning will not help until then ({cached})")
    return EncoderError(f"a Ray worker failed on a batch ({cause}); {cached}: rerun `recsys embed --engine ray` to "
                        "resume with the rest (or `--engine local`)")


def embed_catalog_ray(store: Store, settings: Settings, progress: Progress | None = None, *,
                      address: str | None = None, workers: int = 2, batch_size: int = BATCH,
                      encoder: TowerEncoder | None = None) -> EmbedReport:
    """Embed every (non-deleted) item on Ray Data; cached items are not re-encoded.

    ``address``: a Ray cluster (``ray://head:10001`` or ``auto``); None starts (or reuses) a local Ray.
    ``workers``: actors in the pool, each loading the encoder once (and one GPU each when the device is CUDA).
    ``encoder`` is used in the driver only for its id (by default the configured encoder, loaded on the CPU).
    A worker's failure raises EncoderError naming its cause; the batches finished before it stay cached.
    """
    from recsys.encoders.catalog import failed_media, read_items, record_media_status
    from recsys.encoders.fit import limits_of

    t0 = time.perf_counter()
    check_address(address)  # in seconds, before the encoder loads and the catalogue is read
    if encoder is None:
        local = settings.model_copy(deep=True)
        local.encoder.device = "cpu"
        encoder = get_encoder(local)
    enc_id = encoder.id
    items = read_items(store, generated_below=settings.encoder.generated_text_below)
    fields = settings.encoder.text_fields
    find = MediaFinder.of(settings)  # the workers find moved media as the driver does: RECSYS_HOME is shared
    keys = [item_key(it, key_id(encoder), fields, find, limits_of(settings)) for it in items]
    cache = vector_cache(settings, enc_id)
    found = cache.get_many(keys)
    todo, still = to_encode(items, keys, found, failed_media(store), find, limits_of(settings))
    log.info("embed (ray): %d items, %d cached, %d to encode with %s", len(items), len(items) - len(todo),
             len(todo), enc_id)
    record_media_status(store, still)
    run = _Run(store, cache, items, keys, found, progress, find, done=len(items) - len(todo))
    again = set(todo)
    run.broken = tally((it for i, it in enumerate(items) if i not in again), still, run.errors)
    ray: Any = _ensure_ray(address) if todo else None  # joined before the items stage shows: it never waits on Ray
    if progress:
        progress(run.done, len(items))
    if todo:
        size = min(pool_size(ray, settings, workers), len(todo))  # an actor more than items would load for nothing
        ds = ray.data.from_items([{"row": i, "record": _to_json(items[i]), "expect": enc_id} for i in todo])
        out = ds.map_batches(ItemEmbedder, fn_constructor_kwargs={"settings": settings},
                             batch_size=batch_size, batch_format="numpy",
                             compute=ray.data.ActorPoolStrategy(size=size), num_cpus=1,
                             num_gpus=1 if wants_gpu(settings) else 0)
        try:
            for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
                run.add(batch)
        except ray.exceptions.RayError as e:
            raise _worker_failed(e, run.done, len(items)) from e
    # the text tower's vectors from the driver (cached features): without them the served ranker's content space
    # silently fell back to the fused vectors
    return finish_embed(settings, encoder, items, [found[k] for k in keys], len(todo), run.broken, run.errors, t0)


class _Run:
    """The driver's side of one Ray embed: each finished batch is cached and its media status recorded at once, so
    a failure later loses none of it."""

    def __init__(self, store: Store, cache: VectorCache, items: list[ItemRecord], keys: list[str],
                 found: dict[str, np.ndarray], progress: Progress | None, find: MediaFinder, done: int) -> None:
        self.store, self.cache, self.items, self.keys, self.found = store, cache, items, keys, found
        self.progress, self.find, self.done = progress, find, done
        self.errors: dict[str, str] = {}
        self.broken = 0

    def add(self, batch: Mapping[str, np.ndarray]) -> None:
        from recsys.encoders.vectors import pack

        rows = [int(r) for r in batch["row"]]
        new: dict[str, np.ndarray] = {}
        status = MediaStatus()
        for j, i in enumerate(rows):
            new[self.keys[i]] = pack(batch["text"][j], batch["image"][j], bool(batch["has_image"][j]))
            for uri, kind, reason in json.loads(str(batch["status"][j])):
                status[uri, kind] = reason
        self.broken += tally((self.items[i] for i in rows), status, self.errors)
        # the local engine's step; before caching: a failure cached but not recorded is never retried
        record_status(self.store, status, self.find)
        self.cache.put_many(new)
        self.found.update(new)
        self.done += len(rows)
        if self.progress:
            self.progress(self.done, len(self.items))
