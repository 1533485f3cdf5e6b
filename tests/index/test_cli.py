from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from recsys.cli.index import app
from recsys.config import get_settings
from recsys.index import build_generation, current_id, disk_bytes, index_root, layout
from tests.index.fixtures import clustered, ids


def _two_generations(root: Path) -> tuple[str, str]:
    v = clustered(40)
    a, b = (build_generation(root, ids(40), {"fused": v}, encoder_id="e").generation_id for _ in range(2))
    return a, b


def test_list_and_rollback(home: Path) -> None:
    root = index_root(get_settings())
    runner = CliRunner()
    assert json.loads(runner.invoke(app, ["list", "--json"]).stdout.strip().splitlines()[-1]) == []
    a, b = _two_generations(root)
    rows = json.loads(runner.invoke(app, ["list", "--json"]).stdout.strip().splitlines()[-1])
    assert [(r["generation_id"], r["current"]) for r in rows] == [(a, False), (b, True)]
    plain = runner.invoke(app, ["list"])  # the table alone, on stdout (`| grep`, `> file`): JSON only when asked
    assert f"* {b}" in plain.stdout and f"  {a}" in plain.stdout and "{" not in plain.stdout
    assert plain.stderr == ""  # nothing wrong, nothing to advise
    res = runner.invoke(app, ["rollback", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout.strip().splitlines()[-1]) == {"current": a}
    assert current_id(root) == a
    assert runner.invoke(app, ["rollback", "--to", b]).exit_code == 0 and current_id(root) == b


def test_public_api() -> None:
    import recsys.index as ix

    assert sorted(ix.__all__) == ix.__all__
    for name in ix.__all__:
        assert hasattr(ix, name), name


# `recsys index list` says when CURRENT names a generation that is gone (or none is current), and what to run;
# the JSON rows keep their shape.
def test_list_names_a_missing_current_generation_and_the_fix(home: Path) -> None:
    root = index_root(get_settings())
    runner = CliRunner()
    a, b = _two_generations(root)
    assert "missing" not in runner.invoke(app, ["list"]).stderr
    shutil.rmtree(layout.generations_dir(root) / b)  # the served one deleted by hand
    res = runner.invoke(app, ["list", "--json"])
    assert f"CURRENT names generation {b}, which is missing" in res.stderr and "recsys index rollback" in res.stderr
    assert [r["generation_id"] for r in json.loads(res.stdout.strip().splitlines()[-1])] == [a]
    assert runner.invoke(app, ["rollback"]).exit_code == 0 and current_id(root) == a  # the fix it names works

    (root / layout.POINTER).unlink()
    res = runner.invoke(app, ["list"])
    assert "no generation is current" in res.stderr and f"recsys index rollback --to {a}" in res.stderr
    shutil.rmtree(layout.generations_dir(root) / a)
    (root / layout.POINTER).write_text(f"{a}\n")
    res = runner.invoke(app, ["list"])
    assert f"CURRENT names generation {a}, which is missing" in res.stderr and "recsys index build" in res.stderr


# `recsys index list` gives each generation's bytes and, in its text, what all of them take on disk, a delta's
# hard-linked base files counted once; it names directories an interrupted prune left.
def test_list_gives_sizes_and_names_what_a_cut_prune_left(home: Path) -> None:
    root = index_root(get_settings())
    runner = CliRunner()
    a, b = _two_generations(root)
    rows = json.loads(runner.invoke(app, ["list", "--json"]).stdout.strip().splitlines()[-1])
    on_disk = {r["generation_id"]: sum(p.stat().st_size for p in (layout.generations_dir(root) / r["generation_id"])
                                       .rglob("*") if p.is_file() and p.name != layout.MANIFEST) for r in rows}
    assert [r["bytes"] for r in rows] == [on_disk[a], on_disk[b]] and on_disk[a] > 0
    text = runner.invoke(app, ["list"]).stdout
    assert f"2 generations, {disk_bytes(root) / 2**20:.1f} MB on disk" in text
    assert disk_bytes(root) > on_disk[a] + on_disk[b]  # the manifests too; nothing shared between full builds
    (layout.generations_dir(root) / a / layout.MANIFEST).unlink()
    res = runner.invoke(app, ["list"])
    text = res.stderr  # a warning: on stderr, the rows on stdout
    assert f"* {b}" in res.stdout and b not in text
    assert f"1 directory under {root / 'generations'} without a manifest ({a})" in text
    assert "the next `recsys index build` removes them" in text


# A generation whose manifest predates recorded sizes gets its bytes from its files, not 0.
def test_an_old_manifest_without_sizes_is_sized_from_its_files(home: Path) -> None:
    root = index_root(get_settings())
    gid = build_generation(root, ids(40), {"fused": clustered(40)}, encoder_id="e").generation_id
    path = layout.generations_dir(root) / gid / layout.MANIFEST
    m = json.loads(path.read_text())
    m.pop("sizes")
    path.write_text(json.dumps(m))
    rows = json.loads(CliRunner().invoke(app, ["list", "--json"]).stdout.strip().splitlines()[-1])
    files = sum(p.stat().st_size for p in path.parent.rglob("*") if p.is_file())
    assert rows[0]["bytes"] == files > 0
