"""Faults on a private PostgreSQL cluster, made by the test (``initdb`` in a temporary directory, started on a free
loopback port), served by ``recsys serve`` in a subprocess: kill -9 of the server during event ingestion and of an
event import, PostgreSQL stopped and hung under load, concurrent writers of new items. Every case holds "no
acknowledged write lost, no 5xx except 503 with Retry-After".

Skipped where no ``initdb`` is installed, or when running as root without a ``postgres`` user to run it as
(PostgreSQL refuses to run as root; as root the cluster lives in a directory given to ``postgres``). The cluster runs
with ``fsync=off``: the faults are process crashes, not power loss.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from recsys.api.auth import create_key
from recsys.config import Settings
from recsys.store import Store
from recsys.store.importers import run_import
from recsys.store.tables import Event, Item, User
from tests.api.servers import Server, free_port, write_items

READ_TIMEOUT_S = 1.0
"""The servers' bound on every database call of a request (``store.request_read_timeout_s``)."""
RECSYS = str(Path(sys.executable).parent / "recsys")


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    path = found[-1] if found else shutil.which("initdb")
    return Path(path).parent if path else None


class Cluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1:``port`` (trust auth, user ``postgres``). As root, its files
    belong to ``postgres`` and its tools run through ``runuser``."""

    def __init__(self, bin_dir: Path, root: Path, run_as: str | None) -> None:
        self.bin, self.root, self.run_as = bin_dir, root, run_as
        self.port = free_port()
        self.data, self.sock, self.log = root / "data", root / "sock", root / "postgres.log"
        self.sock.mkdir()
        if run_as:
            owner = pwd.getpwnam(run_as)
            for p in (root, self.sock):
                os.chown(p, owner.pw_uid, owner.pw_gid)
        self._tool("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        self.start()

    def _tool(self, name: str, *args: str) -> None:
        cmd = [str(self.bin / name), *args]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, f"{' '.join(cmd)}: {out.stdout}{out.stderr}"

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c max_connections=200")
        self._tool("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30", "-o", options, "start")

    def stop(self, mode: str = "immediate") -> None:
        self._tool("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def processes(self) -> list[int]:
        """The postmaster and its children."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP to the postmaster and its children (a hung server: connections open, nothing answers), SIGCONT
        on leaving."""
        pids = self.processes()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in reversed(pids):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb) on this machine")
    run_as = None
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as the postgres user, in a directory it owns
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run initdb as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser to run initdb as postgres")
        run_as = "postgres"
        root = Path(tempfile.mkdtemp(prefix="recsys-pg-"))  # pytest's tmp dirs are private to root
    else:
        root = tmp_path_factory.mktemp("pg")
    try:
        c = Cluster(bin_dir, root, run_as)
    except AssertionError as e:
        if run_as:
            shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start a private PostgreSQL cluster: {str(e)[-500:]}")
    try:
        yield c
    finally:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            c.stop()
        if run_as:
            shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _store(url: str, home: Path) -> Iterator[Store]:
    store = Store.open(Settings(home=home, database_url=url))
    try:
        yield store
    finally:
        store.dispose()


def _served(cluster: Cluster, tmp_path: Path, name: str) -> tuple[dict[str, str], str, str]:
    """A database ``name`` with five items, the environment of a server on it, the database URL and an admin
    key (auth on: every request also reads the key's state through the event loop's pool)."""
    url = cluster.create_database(name)
    home = tmp_path / name
    with _store(url, home) as store:
        run_import(store, "items", write_items(tmp_path / f"{name}-items.jsonl", 5),
                   settings=Settings(home=home, database_url=url))
        key, _ = create_key(store, "fault-suite", "admin")
    env = {"RECSYS_HOME": str(home), "RECSYS_DATABASE_URL": url, "RECSYS_API__RATE_LIMIT_PER_MINUTE": "0",
           "RECSYS_STORE__REQUEST_READ_TIMEOUT_S": str(READ_TIMEOUT_S), "RECSYS_API__REFRESH_SECONDS": "0.5",
           "RECSYS_API__RETRY_AFTER_SECONDS": "1", "RECSYS_LOG_LEVEL": "ERROR"}
    return env, url, key


def _serve(env: dict[str, str], log: Path) -> Server:
    server = Server(env, log=log, args=[RECSYS, "serve", "--no-banner", "--host", "127.0.0.1", "--port", "{port}"])
    try:
        server.wait_ready()
    except Exception:
        server.kill()
        raise
    return server


def _acceptable(r: httpx.Response) -> bool:
    """No 5xx except 503 with a Retry-After of at least a second."""
    if r.status_code < 500:
        return True
    return r.status_code == 503 and int(r.headers.get("retry-after", "0")) >= 1


def _stored_event_ids(url: str, home: Path) -> set[str]:
    with _store(url, home) as store, store.session() as s:
        return {c for c in s.scalars(select(Event.client_event_id)) if c}


class Ingest:
    """Threads posting batches of events with ids; an id is acknowledged when its batch answered 200. Records
    every answer that breaks "no 5xx except 503 with Retry-After" and the status counts."""

    def __init__(self, server: Server, key: str, *, threads: int = 4, stop_on_transport_error: bool = False) -> None:
        self.server, self.key = server, key
        self.acked: set[str] = set()
        self.codes: Counter[str] = Counter()
        self.bad: list[str] = []
        self._ids = itertools.count()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._stop_on_transport_error = stop_on_transport_error
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=30, headers={"X-API-Key": self.key}) as http:
            while not self._stop.is_set():
                batch = [{"user_id": f"u{n % 7}", "item_id": f"i{n % 5}", "type": "view", "event_id": f"e{n}"}
                         for n in (next(self._ids) for _ in range(5))]
                try:
                    r = http.post("/v1/events", json={"events": batch})
                except httpx.TransportError as e:
                    with self._lock:
                        self.codes[type(e).__name__] += 1
                    if self._stop_on_transport_error:
                        return  # the server died mid-request: that batch was never acknowledged
                    continue
                with self._lock:
                    self.codes[str(r.status_code)] += 1
                    if not _acceptable(r):
                        self.bad.append(f"{r.status_code} {r.headers} {r.text[:300]}")
                    elif r.status_code == 200:
                        results = r.json()["results"]
                        if all(res["status"] in ("stored", "duplicate") for res in results):
                            self.acked.update(ev["event_id"] for ev in batch)
                        else:
                            self.bad.append(f"200 with results {results}")
                    else:
                        time.sleep(0.05)

    def wait_for(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < n:
            assert time.monotonic() < deadline, f"only {len(self.acked)} events acknowledged: {self.codes}"
            time.sleep(0.01)

    def __enter__(self) -> Ingest:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)


def _until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``check()`` held (polled every 0.1 s), failing after ``timeout``."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.1)
    return time.monotonic() - t0


# -- (a) kill -9 of the server during ingestion ----------------------------------------------------------------------
def test_sigkill_of_the_server_during_ingestion_loses_no_acknowledged_event(cluster: Cluster, tmp_path: Path) -> None:
    env, url, key = _served(cluster, tmp_path, "kill_server")
    with _serve(env, tmp_path / "server.log") as server, Ingest(server, key, stop_on_transport_error=True) as load:
        load.wait_for(300)
        server.kill()  # SIGKILL to the process group while batches are in flight
    assert not load.bad, load.bad[:5]
    stored = _stored_event_ids(url, Path(env["RECSYS_HOME"]))
    assert load.acked and load.acked <= stored, f"lost: {sorted(load.acked - stored)[:10]}"


# -- (b) kill -9 of an event import ----------------------------------------------------------------------------------
def test_sigkill_of_an_import_leaves_nothing_half_written(cluster: Cluster, tmp_path: Path) -> None:
    url = cluster.create_database("kill_import")
    home = tmp_path / "home"
    with _store(url, home) as store:
        run_import(store, "items", write_items(tmp_path / "items.jsonl", 50), settings=Settings(home=home,
                                                                                            database_url=url))
    n = 30_000
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"user_id": f"u{i % 400}", "item_id": f"i{i % 50}", "type": "view",
                                          "event_id": f"imp-{i}", "timestamp": f"2024-01-01T00:00:{i % 60:02d}"})
                              + "\n" for i in range(n)))
    env = {**os.environ, "RECSYS_HOME": str(home), "RECSYS_DATABASE_URL": url, "RECSYS_LOG_LEVEL": "ERROR"}
    cmd = [RECSYS, "import", "events", str(events)]

    def counts() -> tuple[int, int, int]:
        with _store(url, home) as store, store.session() as s:
            return (s.scalar(select(func.count(Event.id))) or 0, s.scalar(select(func.count(User.id))) or 0,
                    s.scalar(select(func.count(Item.id))) or 0)

    import psycopg

    with psycopg.connect(f"host=127.0.0.1 port={cluster.port} user=postgres dbname=kill_import",
                         autocommit=True) as watch:
        def writing() -> bool:  # the import's transaction has written rows, not yet committed
            row = watch.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = 'kill_import' "
                                "AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()").fetchone()
            return bool(row and row[0])

        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            _until(lambda: writing() or proc.poll() is not None, 60, "the import never started writing")
            assert proc.poll() is None, f"the import ended before it could be killed: {proc.stderr.read()!r}"  # type: ignore[union-attr]
            time.sleep(0.3)  # well into its batches
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        _until(lambda: not writing(), 30, "the killed import's transaction never ended")
    events_after, users_after, items_after = counts()
    assert (events_after, users_after, items_after) == (0, 0, 50)  # all or nothing: here nothing
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert counts() == (n, 400, 50)  # re-run once, complete, nothing twice


# -- (c), (d), (e) on one server -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str, str, Path]]:
    """(server, database URL, admin key, home) on a database of the private cluster."""
    tmp = tmp_path_factory.mktemp("pg-served")
    env, url, key = _served(cluster, tmp, "served")
    with _serve(env, tmp / "server.log") as server:
        yield server, url, key, Path(env["RECSYS_HOME"])


COLOURS = ["ultramarine", "vermilion", "chartreuse", "periwinkle", "aubergine", "saffron", "celadon", "heliotrope"]


def test_concurrent_puts_of_new_items_all_stored_and_searchable(served: tuple[Server, str, str, Path]) -> None:
    server, _, key, _ = served
    start = threading.Barrier(len(COLOURS))

    def put(colour: str) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=120, headers={"X-API-Key": key}) as http:
            start.wait(timeout=30)
            return http.put(f"/v1/items/new-{colour}", json={"title": f"{colour} velvet lantern", "category": "lamp"})

    with ThreadPoolExecutor(len(COLOURS)) as pool:
        answers = list(pool.map(put, COLOURS))
    assert [r.status_code for r in answers] == [200] * len(COLOURS), [r.text[:300] for r in answers]
    with httpx.Client(base_url=server.url, timeout=60, headers={"X-API-Key": key}) as http:
        for colour in COLOURS:
            r = http.get("/v1/search/text", params={"q": colour, "k": 3})
            assert r.status_code == 200, r.text
            assert r.json()["items"][0]["item_id"] == f"new-{colour}", r.text[:500]


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_postgres_stopped_under_load_503_then_recovery(cluster: Cluster,
                                                       served: tuple[Server, str, str, Path]) -> None:
    server, url, key, home = served
    with Ingest(server, key) as load:
        load.wait_for(100)
        cluster.stop("immediate")  # a crash: every connection dies, new ones are refused
        try:
            _until(lambda: load.codes["503"] >= 20, 30, f"no 503 during the outage: {load.codes}")
        finally:
            cluster.start()
        acked = len(load.acked)
        recovered = _until(lambda: len(load.acked) > acked + 50, 30, "ingestion did not recover")
    assert not load.bad, load.bad[:5]
    assert set(load.codes) <= {"200", "503"}, load.codes
    assert recovered < 15
    stored = _stored_event_ids(url, home)
    assert load.acked <= stored, f"lost: {sorted(load.acked - stored)[:10]}"
    with httpx.Client(base_url=server.url, timeout=30, headers={"X-API-Key": key}) as http:
        _until(lambda: http.get("/readyz").json()["store"] is True, 15, "/readyz never saw the store again")
        metrics = http.get("/metrics").text
    assert _metric(metrics, "recsys_db_pool_connections ") >= 1  # the event loop's pool is back
    assert _metric(metrics, 'recsys_db_pool_errors_total{kind="connect"}') >= 1  # and counted the outage


ROUTES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "events": ("POST", "/v1/events", {"events": [{"user_id": "u1", "item_id": "i1", "type": "view"}]}),
    "item": ("GET", "/v1/items/i1", None),
    "put": ("PUT", "/v1/items/hung-1", {"title": "written while the database hangs"}),
    "readyz": ("GET", "/readyz", None),
    "recommendations": ("GET", "/v1/users/u1/recommendations?k=5", None),
    "similar": ("GET", "/v1/items/i1/similar?k=5", None),
    "trending": ("GET", "/v1/trending?k=5", None),
    "search": ("GET", "/v1/search/text?q=item&k=5", None),
    "metrics": ("GET", "/metrics", None),
}
MUST_FAIL = {"events", "item", "put", "readyz"}
"""Routes that cannot answer without the database; the others may answer from what the server holds."""


def test_hung_postgres_every_route_gives_up_in_bounded_time(cluster: Cluster,
                                                           served: tuple[Server, str, str, Path]) -> None:
    server, _, key, _ = served

    def call(route: str) -> tuple[str, httpx.Response | str, float]:
        method, path, body = ROUTES[route]
        t0 = time.monotonic()
        try:
            with httpx.Client(base_url=server.url, timeout=30, headers={"X-API-Key": key}) as http:
                r: httpx.Response | str = http.request(method, path, json=body)
        except httpx.HTTPError as e:
            r = f"{type(e).__name__}: {e}"
        return route, r, time.monotonic() - t0

    for route in ROUTES:  # warm: the text encoder loaded, connections pooled
        _, r, _ = call(route)
        assert isinstance(r, httpx.Response) and _acceptable(r), (route, r)
    with cluster.frozen(), ThreadPoolExecutor(len(ROUTES)) as pool:
        answers = list(pool.map(call, ROUTES))
    # a request's own reads give up after READ_TIMEOUT_S each (the key check, then the route's); a new connection
    # after libpq's connect_timeout (at least 2 s)
    for route, r, took in answers:
        assert isinstance(r, httpx.Response), (route, r)
        assert took < 8, (route, took, r.status_code)
        assert _acceptable(r), (route, r.status_code, r.text[:300])
        if route in MUST_FAIL:
            assert r.status_code == 503, (route, r.status_code, r.text[:300])
    with httpx.Client(base_url=server.url, timeout=30, headers={"X-API-Key": key}) as http:
        recovered = _until(lambda: http.post("/v1/events", json=ROUTES["events"][2]).status_code == 200, 30,
                           "ingestion did not recover after the database resumed")
        assert http.get("/v1/items/i1").status_code == 200
    assert recovered < 15
