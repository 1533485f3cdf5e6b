"""Per-candidate repeat counts and last times, looked up in the history, equal the catalogue-wide count."""

from __future__ import annotations

import numpy as np

from recsys.ranking.features import _repeats


def test_repeats_match_catalogue_wide_counts() -> None:
    rng = np.random.default_rng(0)
    n = 50
    h_rows = rng.integers(0, n, 30)
    h_ts = np.sort(rng.uniform(0, 100, 30))
    rows = rng.permutation(n)[:35]
    cnt, last = _repeats(h_rows, h_ts, rows)
    want_cnt = np.bincount(h_rows, minlength=n)[rows]
    want_last = np.full(n, -np.inf)
    np.maximum.at(want_last, h_rows, h_ts)
    np.testing.assert_array_equal(cnt, want_cnt)
    np.testing.assert_array_equal(last, want_last[rows])


def test_history_count_features_match_a_plain_count() -> None:
    """Repeat, variant, category and attribute columns against a loop over the history."""
    from recsys.ranking.candidates import CandidateGenerator, ExactSearch
    from recsys.ranking.catalog import ItemTable
    from recsys.ranking.context import make_context
    from recsys.ranking.features import FEATURES, feature_matrix
    from recsys.ranking.history import history_from_frame
    from recsys.ranking.stats import ItemStats
    from tests.ranking.fixtures import make_world, small_params, user_events

    world = make_world()
    items = world.items.copy()
    items["attributes"] = [{**a, "product_code": i.rsplit("-", 1)[0]} for a, i in
                           zip(items["attributes"], items["item_id"], strict=True)]  # variants: same type and colour
    p = small_params()
    table = ItemTable.build(world.vectors, items, "product_code")
    stats = ItemStats.fit(table.ids, {}, p.cooc_window)
    known = np.ones(table.n, bool)
    gen = CandidateGenerator(table, stats, ExactSearch(table.ids, table.fused), p, known)
    h = history_from_frame(user_events(["dress-red-0", "hat-blue-1", "dress-red-0", "dress-red-2", "bag-green-3"]),
                           table)
    ctx = make_context(h, float(h.ts[-1]) + 2.0, stats, p)
    cands = gen.generate(ctx)
    f = feature_matrix(ctx, cands, table, known, p)
    col = {n: i for i, n in enumerate(FEATURES)}
    hist = list(zip(h.rows.tolist(), h.ts.tolist(), strict=True))
    assert (table.group >= 0).all() and len(table.attr_keys)
    for i, r in enumerate(cands.rows.tolist()):
        same = [t for hr, t in hist if hr == r]
        assert f[i, col["log_repeat"]] == np.float32(np.log1p(len(same)))
        want = np.log1p(ctx.now - max(same)) if same else -1.0
        assert f[i, col["repeat_days"]] == np.float32(want)
        var = [t for hr, t in hist if table.group[hr] == table.group[r]]
        assert f[i, col["log_variant"]] == np.float32(np.log1p(len(var)))
        assert f[i, col["variant_days"]] == np.float32(np.log1p(ctx.now - max(var)) if var else -1.0)
        cat = sum(table.category[hr] == table.category[r] for hr, _ in hist) / len(hist)
        assert f[i, col["category_share"]] == np.float32(cat)
        for j in range(len(table.attr_keys)):
            share = sum(table.attrs[hr, j] == table.attrs[r, j] >= 0 for hr, _ in hist) / len(hist)
            assert f[i, col[f"attr_share_{j}"]] == np.float32(share)
