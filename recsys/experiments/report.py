"""The report of an experiment: per variant, users, lists, impressions, clicks and conversions (purchases), CTR and
conversion rate with 95% Wilson intervals, and each variant's difference to the control with a p-value.

Only the served lists recorded under the experiment count, and the events attributed to them
(``recsys.feedback.attribution``: their ``recommendation_id``, their user, an item they showed, once per type), from
``since`` on: the definition's ``started_at`` unless the caller gives another time, so a new run (a new salt or new
shares, with its ``started_at``) is reported without the lists of the runs before it.
Rates are over exposures: posted impressions or, when no variant has any, the items the lists showed.

One definition of the rate, shown and compared: a user's clicks (conversions) beyond their exposures, such as clicks
from a client that posts no impressions for some lists, are capped at that user's exposures, in the arm's ``ctr``
(``conversion_rate``) as in ``vs_control``; ``left_out`` says how many were capped away.

The test. A user sees many lists and their clicks are correlated, so the events are not independent trials: the
rate of a variant is a ratio of per-user sums, R = sum(c_u) / sum(n_u), and its variance is estimated from the users
(clustered, by the delta method: Var R = m/(m-1) * sum((c_u - R n_u)^2) / (sum n_u)^2 over m users; Deng et al.
2018). The difference to the control is tested two-sided with z = (R_v - R_c) / sqrt(Var R_v + Var R_c) against
the normal distribution (scipy). The pooled two-proportion z-test, which treats every exposure as independent and
so overstates the evidence when users differ, is given beside it (``p_value_unclustered``).

The sample ratio. Assignment does not look at behaviour, so the users served under each variant must follow the
shares; a split that does not (one arm's requests failing or timing out more, a cache serving one arm's lists
unrecorded, users recorded under one arm only) biases every comparison in the report. ``sample_ratio`` tests the
users per variant against the shares (chi-square goodness of fit) and flags a mismatch below p = 0.001, the usual
threshold for this check (Fabijan et al. 2019), which a correct assignment crosses once in a thousand reports.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select

from recsys.experiments.definitions import Experiment
from recsys.feedback.attribution import attributed
from recsys.feedback.report import Z95, utc_naive, wilson
from recsys.store.tables import ServedList

METRICS = {"ctr": "clicks", "conversion_rate": "conversions"}
SRM_ALPHA = 0.001
"""Below this p-value the users per variant are flagged as not following the shares (a sample ratio mismatch)."""
TEST = ("two-sided z-test on the difference of rates, variance clustered by user (delta method); "
        "p_value_unclustered: pooled two-proportion z-test")


def experiment_report(store: Any, exp: Experiment, *, since: datetime | None = None) -> dict[str, Any]:
    """The report of ``exp`` from the store (see the module docstring): the lists served from ``since`` on (default:
    the definition's ``started_at``; all without either; an aware time is converted to UTC, a naive one is UTC)."""
    since = utc_naive(since if since is not None else exp.started_at)
    users = _per_user(store, exp.name, since)
    impressions = any(u["impressions"] for rows in users.values() for u in rows.values())
    basis = "impressions" if impressions else "items_served"
    control = exp.control_name
    names = [v.name for v in exp.variants] + sorted(set(users) - {v.name for v in exp.variants})
    arms = {name: _arm(users.get(name, {}), basis) for name in names}
    variants = []
    for v in names:
        row = {"name": v, "control": v == control,
               "share": next((x.share for x in exp.variants if x.name == v), None),
               **{k: val for k, val in arms[v].items() if not k.startswith("_")}}
        if v != control:
            row["vs_control"] = {m: compare(arms[v]["_per_user"][m], arms[control]["_per_user"][m])
                                 for m in METRICS}
        variants.append(row)
    return {"experiment": exp.name, "active": exp.active, "control": control,
            "since": since.isoformat() if since is not None else None, "exposure_basis": basis,
            "confidence": 0.95, "test": TEST, "variants": variants,
            "sample_ratio": sample_ratio({v.name: len(users.get(v.name, {}).keys() - {""}) for v in exp.variants},
                                         {v.name: v.share for v in exp.variants})}


def sample_ratio(counts: dict[str, int], shares: dict[str, float]) -> dict[str, Any]:
    """The users per variant tested against the variants' shares (see the module docstring): ``p_value`` of the
    chi-square goodness-of-fit test and ``mismatch`` (p below ``SRM_ALPHA``); both None, with a ``note``, while a
    variant expects fewer than 5 users, where the test's approximation does not hold."""
    from scipy.stats import chisquare

    total = sum(counts.values())
    expected = {name: total * share for name, share in shares.items()}
    out: dict[str, Any] = {"users": counts, "expected": {k: round(v, 2) for k, v in expected.items()},
                           "p_value": None, "mismatch": None, "alpha": SRM_ALPHA, "note": None}
    if len(counts) < 2 or min(expected.values()) < 5:
        out["note"] = (f"too few users to test the split ({total}): each variant needs at least 5 expected; "
                       "users of the anonymous lists are not counted")
        return out
    names = list(shares)
    p = float(chisquare([counts[n] for n in names], [expected[n] for n in names]).pvalue)
    out.update(p_value=p, mismatch=p < SRM_ALPHA)
    if out["mismatch"]:
        out["note"] = ("the users per variant do not follow the shares: something other than the assignment decides "
                       "who is recorded in which arm (errors, caching, a filter), so the comparisons are biased; "
                       "find the cause before reading them")
    return out


def _per_user(store: Any, name: str, since: datetime | None = None) -> dict[str, dict[str, dict[str, int]]]:
    """variant -> user -> counts (lists, items_served, impressions, clicks, conversions) of the lists served under
    experiment ``name`` from ``since`` on."""
    keys = (ServedList.variant, ServedList.user_id)
    where = [ServedList.experiment == name, *(() if since is None else (ServedList.created_at >= since,))]
    lists_q = (select(*keys, func.count(ServedList.id), func.coalesce(func.sum(ServedList.size), 0))
               .where(*where).group_by(*keys))
    field = {"impression": "impressions", "click": "clicks", "purchase": "conversions"}
    out: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)

    def user(variant: str, user_id: str | None) -> dict[str, int]:
        return out[variant].setdefault(user_id or "", {"lists": 0, "items_served": 0, "impressions": 0,
                                                       "clicks": 0, "conversions": 0})

    with store.session() as s:
        for variant, user_id, n, size in s.execute(lists_q):
            u = user(variant or "", user_id)
            u["lists"], u["items_served"] = int(n), int(size)
        for (variant, user_id), etype, n in attributed(s, keys, list(field), *where):
            if etype is not None:  # events a list cannot have led to count in the feedback report's unattributed
                user(variant or "", user_id)[field[etype]] += n
    return out


def _arm(users: dict[str, dict[str, int]], basis: str) -> dict[str, Any]:
    total = {k: sum(u[k] for u in users.values()) for k in ("lists", "items_served", "impressions", "clicks",
                                                             "conversions")}
    n = np.array([u[basis] for u in users.values()], dtype=float)
    # a user's clicks beyond their exposures (clicks without impressions) are capped at them, once, here: the shown
    # rate and the comparison are then the same sums, and left_out says what the cap took
    per_user, rates, left_out = {}, {}, {}
    for m, f in METRICS.items():
        posted = np.array([u[f] for u in users.values()], dtype=float)
        capped = np.minimum(posted, n)
        per_user[m] = (capped, n)
        rates[m] = wilson(int(capped.sum()), int(n.sum()))
        left_out[f] = int(posted.sum() - capped.sum())
    return {"users": len(users), **total, "exposures": int(n.sum()), **rates, "left_out": left_out,
            "_per_user": per_user}


def clustered_rate(c: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """(sum c / sum n, its delta-method variance clustered by user); (nan, nan) without exposures."""
    total = float(n.sum())
    if total <= 0:
        return math.nan, math.nan
    r = float(c.sum()) / total
    m = len(n)
    if m < 2:
        return r, math.nan
    var = m / (m - 1) * float(((c - r * n) ** 2).sum()) / total**2
    return r, var


def compare(variant: tuple[np.ndarray, np.ndarray], control: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """A variant's rate minus the control's, with its 95% interval and p-values (clustered and unclustered)."""
    from scipy.stats import norm

    rv, vv = clustered_rate(*variant)
    rc, vc = clustered_rate(*control)
    out: dict[str, Any] = {"difference": None, "relative": None, "low": None, "high": None, "p_value": None,
                           "p_value_unclustered": two_proportion_p(int(variant[0].sum()), int(variant[1].sum()),
                                                                   int(control[0].sum()), int(control[1].sum()))}
    if math.isnan(rv) or math.isnan(rc):
        return out
    diff = rv - rc
    out.update(difference=diff, relative=diff / rc if rc > 0 else None)
    se = math.sqrt(vv + vc) if not (math.isnan(vv) or math.isnan(vc)) else math.nan
    if math.isnan(se):
        return out
    if se == 0:  # every user of both arms had one outcome: no spread to cluster, so no interval; the pooled test
        out.update(p_value=out["p_value_unclustered"],
                   note="every user in each arm had the same outcome: no clustered interval; p_value is the pooled "
                        "test's")
        return out
    out.update(low=diff - Z95 * se, high=diff + Z95 * se, p_value=float(2 * norm.sf(abs(diff) / se)))
    return out


def two_proportion_p(k1: int, n1: int, k2: int, n2: int) -> float | None:
    """The two-sided p-value of the pooled two-proportion z-test (equal to the chi-square test without continuity
    correction on the 2x2 table); None without trials on either side."""
    from scipy.stats import norm

    if n1 <= 0 or n2 <= 0:
        return None
    k1, k2 = min(k1, n1), min(k2, n2)
    p = (k1 + k2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    return float(2 * norm.sf(abs(k1 / n1 - k2 / n2) / se))
