"""`recsys serve` (the HTTP API under uvicorn) and `recsys keys create|list|revoke` (API keys)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from recsys.cli._common import emit_json, err

keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_serve(settings: Any, host: str | None = None, port: int | None = None, auth: bool | None = None,
              banner: bool = False, workers: int = 1) -> None:
    """Serve the API with uvicorn until interrupted. Auth may be off only when binding to loopback.

    ``workers`` > 1 runs that many server processes on the port (uvicorn's supervisor), each with its own loaded
    generations and result cache; they read their settings from the environment, so the overrides here are
    exported to it first."""
    import uvicorn

    from recsys.api import create_app
    from recsys.api.logs import configure
    from recsys.errors import ConfigError

    host = host or settings.api.host
    port = settings.api.port if port is None else port
    auth = settings.api.auth if auth is None else auth
    if not auth and not is_loopback(host):
        raise ConfigError(f"refusing to serve without API keys on {host}: bind to 127.0.0.1 or turn auth on "
                          "(RECSYS_API__AUTH=true, keys from `recsys keys create`)")
    settings = settings.model_copy(update={"api": settings.api.model_copy(update={"auth": auth, "host": host,
                                                                                  "port": port})})
    configure(os.environ.get("RECSYS_LOG_LEVEL", "INFO"), json_lines=os.environ.get("RECSYS_LOG_FORMAT") != "text")
    if banner:
        _banner(host, port, auth)
    from recsys.api.protocol import HeaderTimeoutProtocol

    HeaderTimeoutProtocol.header_timeout_s = settings.api.header_timeout_s
    options: dict[str, Any] = dict(host=host, port=port, log_config=None, access_log=False,
                                   timeout_graceful_shutdown=5, server_header=False,
                                   http="recsys.api.protocol:HeaderTimeoutProtocol")
    if workers > 1:
        from recsys.errors import StoreUnavailable
        from recsys.store import Store

        try:
            Store.open(settings).dispose()  # schema migrations once, here, not raced by every worker
        except StoreUnavailable as e:  # each worker starts unready and migrates once the database answers
            err.print(f"warning: {e.message}; the server starts unready")
        os.environ.update({"RECSYS_HOME": str(Path(settings.home).resolve()), "RECSYS_API__AUTH": str(auth).lower(),
                           "RECSYS_API__HOST": host, "RECSYS_API__PORT": str(port),
                           "RECSYS_API__HEADER_TIMEOUT_S": str(settings.api.header_timeout_s)})
        if settings.database_url:
            os.environ["RECSYS_DATABASE_URL"] = settings.database_url
        uvicorn.run("recsys.api.app:app_from_env", factory=True, workers=workers, **options)
    else:
        uvicorn.run(create_app(settings), **options)


def _banner(host: str, port: int, auth: bool) -> None:
    base = f"http://{host}:{port}"
    key = ' -H "X-API-Key: $RECSYS_KEY"' if auth else ""
    lines = [
        f"recsys API on {base} (OpenAPI: {base}/docs){'' if auth else ' - auth off, loopback only'}",
        "try:",
        f"  curl -s{key} '{base}/v1/trending?k=5'",
        f"  curl -s{key} '{base}/v1/users/USER_ID/recommendations?k=10&explain=true'",
        f"  curl -s{key} '{base}/v1/search/text?q=red+dress&k=5'",
        f"  curl -s{key} '{base}/v1/items/ITEM_ID/similar?k=5'",
        f"  curl -s{key} -F image=@photo.jpg '{base}/v1/search/image'",
        f"  curl -s{key} -H 'Content-Type: application/json' -d "
        f"'{{\"events\": [{{\"user_id\": \"u1\", \"item_id\": \"ITEM_ID\", \"type\": \"like\"}}]}}' {base}/v1/events",
    ]
    typer.echo("\n".join(lines))


def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default from settings: 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default from settings: 8000)")] = None,
    auth: Annotated[bool | None, typer.Option("--auth/--no-auth", help="require API keys (off: loopback only)")]
    = None,
    banner: Annotated[bool, typer.Option(help="print example calls on start")] = True,
    workers: Annotated[int, typer.Option(min=1, help="server processes (each loads the index and ranker; "
                                                     "ranking holds the GIL, so processes are how it scales)")] = 1,
) -> None:
    """Serve the recommendation HTTP API (FastAPI under uvicorn)."""
    from recsys.config import get_settings

    run_serve(get_settings(), host=host, port=port, auth=auth, banner=banner, workers=workers)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="a unique name for the key, e.g. the client's name")],
    scope: Annotated[str, typer.Option(help="read (queries) or admin (also items and events)")] = "read",
    json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Create an API key; the key itself is printed once and never stored."""
    from recsys.api.auth import create_key
    from recsys.cli._common import open_store

    key, info = create_key(open_store(), name, scope)
    if json:
        emit_json({"name": info.name, "scope": info.scope, "key": key})
    else:
        err.print(f"created {info.scope} key {info.name!r}; store it now, it is not shown again:")
        typer.echo(key)


@keys_app.command("list")
def keys_list(json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List API keys (names and scopes; the keys themselves are not stored)."""
    from recsys.api.auth import list_keys
    from recsys.cli._common import open_store

    rows = list_keys(open_store())
    if json:
        emit_json([{"name": r.name, "scope": r.scope, "created_at": r.created_at, "revoked": r.revoked}
                   for r in rows])
        return
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
