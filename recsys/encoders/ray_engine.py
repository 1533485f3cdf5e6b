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
is an EncoderError naming its cause; the batches finished before it are cached, so a rerun resumes. An address
this machine cannot use (a ``ray://`` one without the Ray Client installed, or one where nothing answers within
:data:`CONNECT_TIMEOUT_S`) is a ConfigError before any work starts: Ray itself retries an unreachable head for minutes.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from recsys.config import Settings
from recsys.encoders.cache import VectorCache
from recsys.encoders.embed import (
    EmbedReport,
    Progress,
    finish_embed,
    item_key,
    key_id,
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


class ItemEmbedder:
    """Ray Data callable class: one encoder per actor, ``encode_items`` per batch."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.encoder = get_encoder(settings)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from recsys.encoders.embed import encode_items

        items = [_from_json(str(s)) for s in batch["record"]]
        try:
            text, image, has_image, status = encode_items(self.encoder, items, self.settings)
        except Exception as e:
            ids = [it.item_id for it in items]
            shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
            raise BatchFailed(f"items {shown}: {type(e).__name__}: {e}") from e
        per_item = [json.dumps({u: status.get(u) for _, u in it.media}) for it in items]
        return {"row": np.asarray(batch["row"], np.int64), "text": text, "image": image,
                "has_image": has_image, "status": np.asarray(per_item, dtype=object),
                "encoder_id": np.asarray([self.encoder.id] * len(items), dtype=object)}


NEEDS_RAY = "the ray engine needs Ray: pip install 'recsys[ray]' (ray[data]>=2.9)"
CONNECT_TIMEOUT_S = 10.0
"""Seconds a Ray address has to accept a connection before the embed is refused (see :func:`check_address`)."""


def check_address(address: str | None) -> None:
    """Refuse a Ray address this machine cannot use, before any work: a ``ray://`` one when the Ray Client is not
    installed (the ``ray`` extra brings Ray Data only), or one where nothing accepts a TCP connection within
    :data:`CONNECT_TIMEOUT_S`. None, ``auto`` and ``local`` (a local Ray, or a cluster this node joined) are left to
    ``ray.init``, as is an address that answers. ``RAY_ADDRESS`` stands in for None and ``auto``, as in Ray."""
    target = os.environ.get("RAY_ADDRESS") if address in (None, "auto") else address
    if not target or target in ("auto", "local"):
        return
    where = f"--ray-address {target}" if target == address else f"RAY_ADDRESS={target}"
    if importlib.util.find_spec("ray") is None:
        raise ConfigError(NEEDS_RAY)
    client = "://" in target
    if client and importlib.util.find_spec("grpc") is None:
        version = importlib.metadata.version("ray")
        raise ConfigError(f"{where} is a Ray Client address, but the Ray Client is not installed here (the ray extra "
                          f'brings Ray Data only): pip install "ray[client]=={version}" (the version of ray '
                          "installed), or run the embed on a node of the cluster with --ray-address auto")
    parts = urlsplit(target if client else f"//{target}")
    try:
        host, port = parts.hostname, parts.port or (10001 if client else 6379)
    except ValueError:
        host = None
    if not host:
        raise ConfigError(f"{where} is not a Ray address: give ray://HOST:PORT (the Ray Client, port 10001 by "
                          "default) or HOST:PORT (the head's GCS, port 6379 by default)")
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:  # refused, unknown host, no route, timed out (TimeoutError is an OSError)
        why = f"no answer within {CONNECT_TIMEOUT_S:g} s" if isinstance(e, TimeoutError) else \
            (e.strerror or type(e).__name__)
        raise ConfigError(f"cannot reach the Ray cluster at {where} ({host}:{port}: {why}): check the host and "
                          "port (ray:// addresses take the head's client port, 10001 by default; HOST:PORT its GCS "
                          "port, 6379), that the head runs (`ray status` on it) and that no firewall blocks the port; "
                          "nothing was embedded") from None


def _ensure_ray(address: str | None) -> Any:
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConfigError(NEEDS_RAY) from e
    if not ray.is_initialized():
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        except Exception as e:  # whatever Ray raises for a cluster it cannot join: one message, not a traceback
            why = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            at = f"at --ray-address {address}" if address else "(a local Ray)"
            raise ConfigError(f"Ray could not start or connect {at}: {type(e).__name__}: {why}; check the address, "
                              "that the cluster runs the Ray and Python versions of this machine, and its logs; "
                              "nothing was embedded") from e
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


def _worker_failed(e: BaseException, done: int, total: int) -> EncoderError:
    return EncoderError(f"a Ray worker failed on a batch ({worker_cause(e)}); the {done} of {total} items of the "
                        "finished batches are cached: rerun `recsys embed --engine ray` to resume with the rest "
                        "(or `--engine local`)")


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
    run = _Run(store, cache, items, keys, found, progress, done=len(items) - len(todo))
    again = set(todo)
    run.broken = tally((it for i, it in enumerate(items) if i not in again), still, run.errors)
    ray: Any = _ensure_ray(address) if todo else None  # joined before the items stage shows: it never waits on Ray
    if progress:
        progress(run.done, len(items))
    if todo:
        size = pool_size(ray, settings, workers)
        ds = ray.data.from_items([{"row": i, "record": _to_json(items[i])} for i in todo])
        out = ds.map_batches(ItemEmbedder, fn_constructor_kwargs={"settings": settings}, batch_size=batch_size,
                             batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=size), num_cpus=1,
                             num_gpus=1 if wants_gpu(settings) else 0)
        try:
            for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
                run.add(batch, enc_id)
        except ray.exceptions.RayError as e:
            raise _worker_failed(e, run.done, len(items)) from e
    # the text tower's vectors from the driver (cached features): without them the served ranker's content space
    # silently fell back to the fused vectors
    return finish_embed(settings, encoder, items, [found[k] for k in keys], len(todo), run.broken, run.errors, t0)


class _Run:
    """The driver's side of one Ray embed: each finished batch is cached and its media status recorded at once, so
    a failure later loses none of it."""

    def __init__(self, store: Store, cache: VectorCache, items: list[ItemRecord], keys: list[str],
                 found: dict[str, np.ndarray], progress: Progress | None, done: int) -> None:
        self.store, self.cache, self.items, self.keys, self.found = store, cache, items, keys, found
        self.progress, self.done = progress, done
        self.errors: dict[str, str] = {}
        self.broken = 0

    def add(self, batch: Mapping[str, np.ndarray], enc_id: str) -> None:
        from recsys.encoders.catalog import record_media_status
        from recsys.encoders.vectors import pack

        remote_ids = {str(x) for x in batch["encoder_id"]}
        if remote_ids != {enc_id}:
            raise ConfigError(f"ray workers built encoder {sorted(remote_ids)}, the driver {enc_id}: "
                              "check that RECSYS_HOME is shared by every node")
        rows = [int(r) for r in batch["row"]]
        new: dict[str, np.ndarray] = {}
        status: dict[str, str | None] = {}
        for j, i in enumerate(rows):
            new[self.keys[i]] = pack(batch["text"][j], batch["image"][j], bool(batch["has_image"][j]))
            status.update(json.loads(str(batch["status"][j])))
        self.broken += tally((self.items[i] for i in rows), status, self.errors)
        record_media_status(self.store, status)  # before caching: a failure cached but not recorded is never retried
        self.cache.put_many(new)
        self.found.update(new)
        self.done += len(rows)
        if self.progress:
            self.progress(self.done, len(self.items))
