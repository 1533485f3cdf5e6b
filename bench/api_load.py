"""HTTP API load: p50 / p99 / requests per second of user recommendations at concurrency 1, 16 and 64, beside the
trivial ``/healthz`` of the same server in the same run, then a soak with the server's memory at start and end.
Recommendations are measured twice: as served (the result cache answers a user whose history, the removed items and
the generations are unchanged since the last call) and uncached (``Cache-Control: no-cache``: every request ranked).

The server is ``recsys`` under uvicorn in its own process on 127.0.0.1 (auth off, rate limit off); this process
drives it with wrk when installed, else httpx (async). Without ``--home`` a demo store is generated and built first
(``recsys demo --no-serve``), on SQLite unless ``--database-url`` names another database. That database must be
empty: the demo stays in it after the run (its home is a temporary folder), and a database that already holds a
store (an earlier run's demo included) is refused before anything is built; empty it between runs. Prints one JSON
object on the last line.

    python bench/api_load.py [--home DIR] [--seconds 10] [--soak-seconds 300] [--items 2000 --users 300]
                             [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from _homes import InputError, exit_if_unusable, require_built  # noqa: E402

NO_CACHE = {"Cache-Control": "no-cache"}  # every request ranked anew (the service's result cache bypassed)
BIN = Path(sys.executable).parent


def child_env(home: Path, database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a child on ``home``: RECSYS_DATABASE_URL only when a URL is given. The settings refuse an
    empty value, and one inherited from this shell would point the child at another store than the SQLite file in
    ``home`` this run reads its users from and reports."""
    env = {k: v for k, v in os.environ.items() if k != "RECSYS_DATABASE_URL"}
    env.update(RECSYS_HOME=str(home), **extra)
    if database_url:
        env["RECSYS_DATABASE_URL"] = database_url
    return env


def prepare_home(home: Path, items: int, users: int, database_url: str) -> None:
    recsys = str(BIN / "recsys") if (BIN / "recsys").exists() else "recsys"
    proc = subprocess.run([recsys, "demo", "--no-serve", "--items", str(items), "--users", str(users)],
                          env=child_env(home, database_url), cwd=ROOT, stdout=sys.stderr)
    if proc.returncode:
        raise SystemExit(f"api_load.py: `recsys demo` failed ({proc.returncode}) building the demo store; "
                         "its message is above")


def refuse_a_used_database(url: str) -> None:
    """Without ``--home`` the demo is imported into ``url``'s database and stays there (its home is a temporary
    folder): a database that already holds items or events, an earlier run's demo or other data, is refused
    before anything is built, naming the database and how to empty it."""
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from recsys.config_checks import check_database_url, without_password
    from recsys.errors import ConfigError

    try:
        u = make_url(check_database_url(url))
    except ConfigError as e:
        raise InputError(f"--database-url: {e}") from None
    sqlite = u.get_backend_name() == "sqlite"
    if sqlite and not (u.database and Path(u.database).is_file()):
        return  # a new SQLite file (opening it here would create it)
    shown, engine = without_password(url), create_engine(u)
    try:
        with engine.connect() as c:
            tables = set(inspect(c).get_table_names())
            held = {t: int(c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
                    for t in ("items", "events") if t in tables}
    except SQLAlchemyError as e:
        raise InputError(f"--database-url {shown}: database {u.database!r} cannot be read "
                         f"({str(getattr(e, 'orig', e) or e).strip().splitlines()[0]})") from None
    finally:
        engine.dispose()
    if any(held.values()):
        empty = f"remove {u.database}" if sqlite else f"`dropdb {u.database} && createdb {u.database}`"
        raise InputError(
            f"--database-url {shown}: database {u.database!r} already holds a store this run did not make "
            f"({held.get('items', 0):,} items, {held.get('events', 0):,} events; each run leaves its demo there): "
            f"without --home the demo is imported into an empty database; empty it first ({empty}) or name another")


def user_ids(home: Path, database_url: str, limit: int = 500) -> list[str]:
    from sqlalchemy import select

    from recsys.config import Settings
    from recsys.store import Store
    from recsys.store.tables import User

    settings = Settings(home=home, database_url=database_url or None)
    store = Store(settings.db_url)
    with store.session() as s:
        ids = list(s.scalars(select(User.external_id).order_by(User.id).limit(limit)))
    store.dispose()
    return ids


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(home: Path, port: int, log: Path, database_url: str) -> subprocess.Popen[bytes]:
    env = child_env(home, database_url, RECSYS_API__AUTH="false", RECSYS_API__RATE_LIMIT_PER_MINUTE="0",
                    RECSYS_LOG_LEVEL="WARNING")
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "recsys.api.app:app_from_env", "--host", "127.0.0.1",
           "--port", str(port), "--no-access-log", "--log-level", "warning", "--timeout-keep-alive", "60"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


TRANSIENT = (None, "", "the database is unreachable")
"""/readyz reasons that may clear by themselves while a server starts; any other reason of a server that is not
ready (e.g. no index generation) will not, and ends the wait at once."""


async def wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> dict[str, Any]:
    """/readyz's answer once ready; exits with its reason and the server log's path as soon as the server died, gives
    a reason that will not clear by itself, or ``timeout_s`` passed."""
    deadline = time.monotonic() + timeout_s
    reason: str | None = None
    async with httpx.AsyncClient(base_url=base, timeout=5) as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited ({proc.returncode}) before it was ready; see its log {log}")
            try:
                r = await c.get("/readyz")
            except httpx.TransportError:
                r = None
            if r is not None and r.status_code == 200:
                return r.json()  # type: ignore[no-any-return]
            if r is not None:
                reason = _reason(r)
                if reason not in TRANSIENT:
                    raise SystemExit(f"the server is not ready: {reason}; see its log {log}")
            await asyncio.sleep(0.1)
    raise SystemExit(f"the server did not become ready in {timeout_s:.0f} s (last /readyz reason: "
                     f"{reason or 'none'}); see its log {log}")


def _reason(r: httpx.Response) -> str | None:
    try:
        body = r.json()
    except ValueError:
        return None
    reason = body.get("reason") if isinstance(body, dict) else None
    return str(reason) if reason else None


async def load(base: str, paths: list[str], concurrency: int, seconds: float,
               headers: dict[str, str] | None = None) -> dict[str, Any]:
    """``concurrency`` closed-loop clients for ``seconds``; latencies of successful answers, errors counted."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits, headers=headers) as c:
        deadline = time.perf_counter() + seconds

        async def worker(offset: int) -> None:
            i = offset
            while time.perf_counter() < deadline:
                path = paths[i % len(paths)]
                i += concurrency
                t0 = time.perf_counter()
                try:
                    r = await c.get(path)
                    ok = r.status_code == 200
                    key = str(r.status_code)
                except httpx.HTTPError as e:
                    ok, key = False, type(e).__name__
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[key] = errors.get(key, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - start
    return summarize(latencies, errors, elapsed)


WRK_SCRIPT = """
local paths = {%(paths)s}
local i = 0
%(headers)s
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK {\\"requests\\": %%d, \\"us\\": %%d, \\"p50\\": %%d, \\"p99\\": %%d, " ..
    "\\"status\\": %%d, " ..
    "\\"connect\\": %%d, \\"read\\": %%d, \\"write\\": %%d, \\"timeout\\": %%d}\\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99), e.status, e.connect, e.read, e.write, e.timeout))
end
"""


def load_wrk(base: str, paths: list[str], concurrency: int, seconds: float,
             headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The same closed loop driven by wrk (C, one thread): it spends ~20 us of CPU a request where the httpx client
    spends ~1 ms, so on a 2-core machine the figures are the server's, not the load generator's."""
    lua = WRK_SCRIPT % {"paths": ", ".join(json.dumps(p) for p in paths),
                        "headers": "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}"
                                             for k, v in (headers or {}).items())}
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as f:
        f.write(lua)
        f.flush()
        out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
                              "-s", f.name, base], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    w = json.loads(line[4:])
    errors = {k: w[k] for k in ("status", "connect", "read", "write", "timeout") if w[k]}
    ok = w["requests"] - w["status"]  # wrk counts non-2xx/3xx answers in requests and in errors.status
    return {"requests": ok, "errors": sum(errors.values()), "error_kinds": errors,
            "rps": round(ok / (w["us"] / 1e6), 1), "p50_ms": round(w["p50"] / 1000, 2),
            "p99_ms": round(w["p99"] / 1000, 2)}


async def drive(args: argparse.Namespace, base: str, paths: list[str], concurrency: int, seconds: float,
                headers: dict[str, str] | None = None) -> dict[str, Any]:
    if args.client == "wrk":
        return await asyncio.to_thread(load_wrk, base, paths, concurrency, seconds, headers)
    return await load(base, paths, concurrency, seconds, headers)


def summarize(latencies: list[float], errors: dict[str, int], elapsed: float) -> dict[str, Any]:
    lat = sorted(latencies)
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) >= 2 else [float("nan")] * 99
    return {"requests": len(lat), "errors": sum(errors.values()), "error_kinds": errors,
            "rps": round(len(lat) / elapsed, 1), "p50_ms": round(q[49] * 1000, 2), "p99_ms": round(q[98] * 1000, 2)}


async def run(args: argparse.Namespace, home: Path, proc: subprocess.Popen[bytes], base: str) -> dict[str, Any]:
    status = await wait_ready(base, proc, args.log, args.ready_timeout)
    users = user_ids(home, args.database_url)
    rec_paths = [f"/v1/users/{u}/recommendations?k={args.k}" for u in users]
    await drive(args, base, rec_paths, 4, args.warmup)  # warm caches, threads and connections
    await drive(args, base, ["/healthz"], 4, min(args.warmup, 2))
    out: dict[str, Any] = {"healthz": {}, "recommendations": {}, "recommendations_uncached": {}}
    for conc in args.concurrency:
        out["healthz"][str(conc)] = await drive(args, base, ["/healthz"], conc, args.seconds)
        out["recommendations"][str(conc)] = await drive(args, base, rec_paths, conc, args.seconds)
        out["recommendations_uncached"][str(conc)] = await drive(args, base, rec_paths, conc, args.seconds, NO_CACHE)

    def ratio_of(kind: str) -> dict[str, float]:
        return {c: round(out[kind][c]["rps"] / max(out["healthz"][c]["rps"], 1e-9), 3) for c in out["healthz"]}

    def p99_over_p50(kind: str) -> float:
        r = out[kind].get("16") or next(iter(out[kind].values()))
        return round(r["p99_ms"] / max(r["p50_ms"], 1e-9), 2)

    soak: dict[str, Any] = {"seconds": args.soak_seconds, "concurrency": 16}
    if args.soak_seconds > 0:
        soak["rss_start_mb"] = round(rss_mb(proc.pid), 1)
        soak["uncached"] = True  # the whole ranking path every request, the harder test of memory growth
        soak.update(await drive(args, base, rec_paths, 16, args.soak_seconds, NO_CACHE))
        soak["rss_end_mb"] = round(rss_mb(proc.pid), 1)
        soak["rss_growth_pct"] = round(100 * (soak["rss_end_mb"] / soak["rss_start_mb"] - 1), 2)
    return {
        "bench": "api_load", "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "client": "wrk -t1 (one client thread)" if args.client == "wrk" else "httpx AsyncClient in the bench process",
        "server": {"database": "postgresql" if args.database_url.startswith("postgresql") else "sqlite",
                   "index_generation": status.get("index_generation"), "ranker_version": status.get("ranker_version"),
                   "users": len(users), "k": args.k},
        "results": out,
        "recommendations_rps_over_healthz": ratio_of("recommendations"),
        "uncached_recommendations_rps_over_healthz": ratio_of("recommendations_uncached"),
        "p99_over_p50_c16": p99_over_p50("recommendations"),
        "uncached_p99_over_p50_c16": p99_over_p50("recommendations_uncached"),
        "soak": soak,
    }


def check_inputs(args: argparse.Namespace) -> None:
    """InputError for what would stop the run only after minutes: a home that is not built (a server would create a
    store there), a database that holds another store, a load generator that is not installed."""
    if args.client == "wrk" and not shutil.which("wrk"):
        raise InputError("--client wrk: wrk is not installed (Debian package wrk); leave --client out to use httpx")
    if args.home is not None:
        require_built(args.home, "--home", args.database_url or None)
    elif args.database_url:
        refuse_a_used_database(args.database_url)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, help="a built data directory (default: generate and build the demo)")
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=10.0, help="per endpoint and concurrency")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--soak-seconds", type=float, default=300.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--database-url", default="",
                    help="the store's database (default: SQLite in the data directory); with --home, the one it was "
                         "built with; without --home, an empty database the demo is imported into (and stays in)")
    ap.add_argument("--client", choices=["auto", "wrk", "httpx"], default="auto",
                    help="load generator: wrk when installed (Debian package wrk), else httpx in this process")
    ap.add_argument("--ready-timeout", type=float, default=120.0,
                    help="seconds the server may take to become ready (loading the generations)")
    args = ap.parse_args()
    exit_if_unusable(lambda: check_inputs(args))  # before a demo is built or a server starts
    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "httpx"
    tmp = None
    home = args.home
    if home is None:
        tmp = tempfile.TemporaryDirectory(prefix="recsys-api-load-")
        home = Path(tmp.name) / "home"
        prepare_home(home, args.items, args.users, args.database_url)
    port = free_port()
    log = args.log = Path(tempfile.gettempdir()) / f"recsys-api-load-{port}.log"
    proc = start_server(home, port, log, args.database_url)
    try:
        result = asyncio.run(run(args, home, proc, f"http://127.0.0.1:{port}"))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if tmp is not None:
            tmp.cleanup()
    result["server_log"] = str(log)
    if args.home is None and args.database_url:
        from recsys.config_checks import without_password

        print(f"api_load.py: {without_password(args.database_url)} now holds this run's demo store; empty it before "
              "the next run", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
