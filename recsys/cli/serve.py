"""`recsys serve` (the HTTP API under uvicorn) and `recsys keys create|list|revoke` (API keys)."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote_plus

import typer

from recsys.cli._common import JsonOpt, emit_json, err

log = logging.getLogger(__name__)
keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)


def is_loopback(host: str) -> bool:
    """Whether auth may be off on ``host``: only the addresses the request layer serves with auth off (127.0.0.1,
    ::1, localhost; :data:`recsys.api.middleware.LOOPBACK`). 127.0.0.2 is loopback too, but a server bound there
    would answer every request 421 (its ``Host`` is not one of those names)."""
    from recsys.api.middleware import LOOPBACK

    return host.lower() in LOOPBACK


def check_port(host: str, port: int) -> None:
    """Fail at once, before any work, when the address is taken (a demo build must not run 10 minutes first)."""
    import socket

    from recsys.errors import ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            raise ConfigError(f"cannot serve on {host}:{port}: {e.strerror or e}; stop what holds the port or choose "
                              f"another (`--port N`, or `make demo PORT=N`)") from None
        except OverflowError:
            raise ConfigError(f"cannot serve on {host}:{port}: a port is 0 to 65535") from None


def example_ids(settings: Any) -> tuple[str | None, str | None, str | None, str | None]:
    """The most active user, a live item, an image file and a text query (the item's first title words) of the
    store, for the banner's example calls (None when there are none): "red dress" found nothing in a film catalogue."""
    from sqlalchemy import select

    from recsys.api.web.pages import active_users
    from recsys.store import Store
    from recsys.store.tables import Item

    try:
        store = Store.open(settings, upgrade=False)
        try:
            users = active_users(store, limit=1)
            with store.reading() as c:
                first = c.execute(select(Item.external_id, Item.title).where(Item.deleted.is_(False),
                                                                             Item.hidden.is_(False))
                                  .order_by(Item.id).limit(1)).first()
                image = example_image(c, Path(settings.home))
        finally:
            store.dispose()
    except Exception:  # the banner never stops a server; the placeholders stay
        return None, None, None, None
    item, title = (str(first[0]), str(first[1] or "")) if first is not None else (None, "")
    words = [w for w in title.split() if any(ch.isalpha() for ch in w)][:2]
    return (users[0][0] if users else None), item, image, (" ".join(words) or None)


def example_image(c: Any, home: Path) -> str | None:
    """An image file of a live item that exists on this machine, as an absolute path: pasted from the banner, a
    placeholder such as photo.jpg fails with no output (curl -s hides "file not found")."""
    from sqlalchemy import select

    from recsys.api.media import local_path
    from recsys.store.tables import Item, ItemMedia

    uris = c.execute(select(ItemMedia.uri).join(Item, Item.id == ItemMedia.item_id)
                     .where(ItemMedia.kind == "image", ItemMedia.status != "error", Item.deleted.is_(False),
                            Item.hidden.is_(False))
                     .order_by(ItemMedia.item_id, ItemMedia.position).limit(20)).scalars()
    for uri in uris:  # the first few only: a store whose images all moved keeps the placeholder, fast
        path = local_path(str(uri))
        for candidate in ([] if path is None else [path] if path.is_absolute() else [home / path, path]):
            if candidate.is_file():
                return str(candidate.resolve())
    return None


@contextlib.contextmanager
def metrics_dir(home: Path) -> Iterator[Path]:
    """A fresh ``PROMETHEUS_MULTIPROC_DIR`` for this server's workers (prometheus_client's multiprocess mode: one
    scrape of any worker sums them all), removed when the server stops. Directories left by servers that died are
    removed too; an operator's own ``PROMETHEUS_MULTIPROC_DIR`` is used as it is."""
    import shutil

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        return
    root = home.resolve() / "prometheus"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("serve-*"):
        if not _alive(old.name.removeprefix("serve-")):
            shutil.rmtree(old, ignore_errors=True)
    path = root / f"serve-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    try:
        yield path
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def run_serve(settings: Any, host: str | None = None, port: int | None = None, auth: bool | None = None,
              banner: bool = False, workers: int = 1, log_format: str = "json") -> None:
    """Serve the API with uvicorn until interrupted. Auth may be off only when binding to loopback.

    ``workers`` > 1 runs that many server processes on the port (uvicorn's supervisor), each with its own loaded
    generations and result cache; they read their settings from the environment, so the overrides here are
    exported to it first. Their metrics are summed (a fresh ``PROMETHEUS_MULTIPROC_DIR``, :func:`metrics_dir`);
    rate limits are shared only through a shared ``api.rate_limit_storage``."""
    import uvicorn

    from recsys.api import create_app
    from recsys.api.logs import configure
    from recsys.config_checks import log_format as format_of
    from recsys.config_checks import log_level
    from recsys.errors import ConfigError

    level, log_format = log_level(os.environ, "INFO"), format_of(os.environ, log_format)  # refused before any work
    host = host or settings.api.host
    port = settings.api.port if port is None else port
    auth = settings.api.auth if auth is None else auth
    if not auth and not is_loopback(host):
        raise ConfigError(f"refusing to serve without API keys on {host}: with auth off bind to 127.0.0.1, ::1 or "
                          "localhost (the only addresses served without keys), or turn auth on "
                          "(RECSYS_API__AUTH=true, keys from `recsys keys create`)")
    settings = settings.model_copy(update={"api": settings.api.model_copy(update={"auth": auth, "host": host,
                                                                                  "port": port})})
    check_port(host, port)
    unanswered = _check_schema(settings)  # migrations once, here, not raced by every worker
    configure(level, json_lines=log_format != "text")
    if banner:
        from recsys.ranking.generations import current_repurchases

        # a ranker that never repeats an item (MovieLens) answers every buy-again with an empty list
        _banner(host, port, auth, *example_ids(settings), buy_again=current_repurchases(settings) is not False)
    from recsys.api.protocol import HeaderTimeoutProtocol

    HeaderTimeoutProtocol.header_timeout_s = settings.api.header_timeout_s
    options: dict[str, Any] = dict(host=host, port=port, log_config=None, access_log=False,
                                   timeout_graceful_shutdown=5, server_header=False,
                                   http="recsys.api.protocol:HeaderTimeoutProtocol",
                                   # the client address (rate limits, the loopback check) is the socket's peer, not a
                                   # header any local caller can set, unless the operator names the proxies to trust
                                   proxy_headers=bool(settings.api.forwarded_allow_ips),
                                   forwarded_allow_ips=settings.api.forwarded_allow_ips or None)
    if workers > 1:
        if unanswered:  # each worker starts unready and migrates once the database answers
            err.print(f"warning: {unanswered}; the server starts unready")
        if not settings.feedback.record_served:  # feeds and what users were shown live in each worker's memory
            log.warning("served lists are not recorded (RECSYS_FEEDBACK__RECORD_SERVED=false): each of the %d workers "
                        "knows only the lists it answered, so a cursor (meta.next) answered by another worker is "
                        "refused as an unknown feed, and exclude_shown_hours leaves out only what the answering "
                        "worker showed; record them, or serve with one worker", workers)
        os.environ.update({"RECSYS_HOME": str(Path(settings.home).resolve()), "RECSYS_API__AUTH": str(auth).lower(),
                           "RECSYS_API__HOST": host, "RECSYS_API__PORT": str(port),
                           "RECSYS_API__HEADER_TIMEOUT_S": str(settings.api.header_timeout_s)})
        if settings.database_url:
            os.environ["RECSYS_DATABASE_URL"] = settings.database_url
        if settings.api.rate_limit_per_minute > 0 and settings.api.rate_limit_storage.startswith("memory"):
            err.print(f"note: rate limits are counted per worker (up to {workers} x "
                      f"{settings.api.rate_limit_per_minute} per key per minute); share them with "
                      "RECSYS_API__RATE_LIMIT_STORAGE=redis://host:6379")
        from recsys.api.limits import RateLimiter

        # a storage that refuses recsys (a wrong Redis password) is refused here, in one line, not by every worker
        RateLimiter(settings.api.rate_limit_per_minute, settings.api.rate_limit_storage,
                    settings.api.rate_limit_strategy)
        with metrics_dir(Path(settings.home)), _supervisor():
            uvicorn.run("recsys.api.app:app_from_env", factory=True, workers=workers, **options)
    else:
        uvicorn.run(create_app(settings), **options)


@contextlib.contextmanager
def _supervisor() -> Iterator[None]:
    """uvicorn's worker supervisor, changed in two ways for ``uvicorn.run(workers=N)``:

    - told to stop, it closes its own copy of the listening socket before it signals the workers. It used to hold it
      while they drained, so the kernel kept completing new connections that no worker would accept, each reset when
      the supervisor exited (8 of ~6,000 attempts in a SIGTERM under load); now, once the workers close theirs, a
      client is refused at once, which a load balancer or client retries safely elsewhere;
    - a worker that exited (killed, out of memory) is logged as a warning before uvicorn starts another (uvicorn says
      it at info level, which a warning-level log never shows)."""
    import importlib

    from uvicorn.supervisors import Multiprocess

    module = importlib.import_module("uvicorn.main")  # `uvicorn.main` the attribute is the click command

    class Supervisor(Multiprocess):
        def terminate_all(self) -> None:
            for sock in self.sockets:
                sock.close()
            super().terminate_all()

        def keep_subprocess_alive(self) -> None:
            for p in [] if self.should_exit.is_set() else self.processes:
                if p.exitcode is not None:
                    log.warning("worker process %s exited (code %s); starting another", p.pid, p.exitcode)
            super().keep_subprocess_alive()

    original = module.Multiprocess  # type: ignore[attr-defined]
    module.Multiprocess = Supervisor  # type: ignore[attr-defined]
    try:
        yield
    finally:
        module.Multiprocess = original  # type: ignore[attr-defined]


def _check_schema(settings: Any) -> str | None:
    """Bring the schema up to date before the banner, or refuse in one line why it cannot be (a database migrated by
    a newer recsys, a role that may not migrate, an object left by an interrupted upgrade): in the app's start-up
    each of these ended in a traceback. A database that does not answer yet is the server's to wait for (it starts
    unready and migrates once it answers): why, then."""
    from recsys.errors import StoreUnavailable
    from recsys.store import Store
    from recsys.store.schema import check_known

    store = Store.open(settings, upgrade=False)
    try:
        check_known(store, store.current_revision())
        store.upgrade()
        return None
    except StoreUnavailable as e:
        return e.message
    finally:
        store.dispose()


def _banner(host: str, port: int, auth: bool, user: str | None = None, item: str | None = None,
            image: str | None = None, query: str | None = None, *, buy_again: bool = True) -> None:
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"  # an IPv6 literal in brackets
    key = ' -H "X-API-Key: $RECSYS_KEY"' if auth else ""
    user, item = user or "USER_ID", item or "ITEM_ID"
    photo = shlex.quote(image) if image else "photo.jpg"
    lines = [
        f"recsys explorer: {base}/   (open it in a browser: search, items, users, live feedback)",
        f"API reference:   {base}/docs{'' if auth else '   (auth off, loopback only)'}",
    ]
    if auth:
        lines += ["API keys are required: use one you created, or create one with",
                  "  recsys keys create NAME --scope admin   (printed once; export RECSYS_KEY=<it>; see keys list)",
                  "and sign in to the explorer with it."]
    lines += [
        "try:",
        f"  curl -sS{key} '{base}/v1/users/{user}/recommendations?k=10&explain=true'",
        *([f"  curl -sS{key} '{base}/v1/users/{user}/buy-again?k=5'"] if buy_again else []),
        f"  curl -sS{key} '{base}/v1/items/{item}/similar?k=5'",
        f"  curl -sS{key} '{base}/v1/search/text?q={quote_plus(query or 'red dress')}&k=5'",
        f"  curl -sS{key} '{base}/v1/trending?k=5'",
        f"  curl -sS{key} -F image=@{photo} '{base}/v1/search/image'",
        f"  curl -sS{key} -H 'Content-Type: application/json' -d "
        f"'{{\"events\": [{{\"user_id\": \"{user}\", \"item_id\": \"{item}\", \"type\": \"like\"}}]}}' "
        f"{base}/v1/events",
    ]
    typer.echo("\n".join(lines))


def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default from settings: 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="port (default from settings: 8000)")] = None,
    auth: Annotated[bool | None, typer.Option("--auth/--no-auth", help="require API keys (off: loopback only)")]
    = None,
    banner: Annotated[bool, typer.Option(help="print example calls on start")] = True,
    workers: Annotated[int, typer.Option(min=1, max=256, help="server processes (each loads the index and ranker; "
                                                     "ranking holds the GIL, so processes are how it scales)")] = 1,
) -> None:
    """Serve the recommendation HTTP API (FastAPI under uvicorn)."""
    from recsys.config import get_settings

    run_serve(get_settings(), host=host, port=port, auth=auth, banner=banner, workers=workers)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="a unique name for the key, e.g. the client's name")],
    scope: Annotated[str, typer.Option(help="read (queries), events (queries and events: a storefront's key) or "
                                            "admin (also items, deletions, reports)")] = "read",
    json: JsonOpt = False,
) -> None:
    """Create an API key; the key itself is printed once and never stored."""
    from recsys.api.auth import create_key
    from recsys.cli._common import open_store
    from recsys.config import without_password

    store = open_store(create=True)  # an API-first deployment makes its keys before any data
    key, info = create_key(store, name, scope)
    if json:
        emit_json({"name": info.name, "scope": info.scope, "key": key})
    else:
        err.print(f"created {info.scope} key {info.name!r} in {without_password(store.url)} (the servers of that store "
                  "accept it); store it now, it is not shown again:")
        typer.echo(key)


@keys_app.command("list")
def keys_list(json: JsonOpt = False) -> None:
    """List API keys (names and scopes; the keys themselves are not stored)."""
    from recsys.api.auth import list_keys
    from recsys.cli._common import open_store

    rows = list_keys(open_store())
    if json:
        emit_json([{"name": r.name, "scope": r.scope, "created_at": r.created_at, "revoked": r.revoked}
                   for r in rows])
        return
    if not rows:  # stderr: the listing on stdout stays empty for scripts
        err.print("no API keys yet: `recsys keys create NAME --scope read|events|admin` makes one")
    for r in rows:
        typer.echo(f"{r.name}\t{r.scope}\t{r.created_at:%Y-%m-%d %H:%M}\t{'revoked' if r.revoked else 'active'}")


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="the key's name")]) -> None:
    """Revoke an API key (running servers stop accepting it within seconds)."""
    from recsys.api.auth import revoke_key
    from recsys.cli._common import open_store

    revoke_key(open_store(), name)
    err.print(f"revoked key {name!r}")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
