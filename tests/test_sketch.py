"""The quantile sketch: its 1 % promise, merges, weights, signs and bounded memory.

What "1 %" means here: for a quantile q over n samples, the answer is within ALPHA (relative)
of the sample whose rank is ceil(q * n) -- numpy's "inverted_cdf" quantile. Because q * n is
computed in floating point on both sides, a rank that lands exactly on an integer may round
either way, so the check accepts the neighbouring ranks too; with 100k+ continuous samples
that tolerance is invisible, but it is stated rather than hidden.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vtmon.sketch import (
    ALPHA,
    LOG_GAMMA,
    Sketch,
    bucketize,
    key_values,
    keys_of,
    summarise,
)

QS = (0.5, 0.9, 0.95, 0.99, 0.999)
TOL = ALPHA * (1 + 1e-9)  # floating point at exact bucket boundaries


def rank_samples(sorted_x: np.ndarray, q: float) -> np.ndarray:
    """The samples of rank ceil(q n) and its neighbours (0-based index k-1 +- 1)."""
    n = sorted_x.size
    k = min(max(math.ceil(q * n), 1), n)
    return sorted_x[max(k - 2, 0) : min(k + 1, n)]


def assert_quantiles(sk: Sketch, data: np.ndarray, qs=QS) -> None:
    xs = np.sort(data)
    got = sk.quantiles(qs)
    for q, v in zip(qs, got, strict=True):
        # the rank rule is numpy's inverted CDF
        exact = np.quantile(xs, q, method="inverted_cdf")
        cands = rank_samples(xs, q)
        assert exact in cands
        assert v is not None
        err = np.abs(v - cands) / np.maximum(np.abs(cands), 1e-300)
        ok = (err <= TOL) | ((cands == 0) & (v == 0))
        assert ok.any(), f"q={q}: got {v!r}, samples near rank {cands!r}"


def bimodal(rng: np.random.Generator, n: int) -> np.ndarray:
    fast = rng.normal(5.0, 0.5, n * 9 // 10)
    slow = rng.lognormal(math.log(800), 0.3, n - fast.size)
    return np.abs(np.concatenate([fast, slow]))


DATASETS = {
    "lognormal": lambda rng, n: rng.lognormal(3.0, 1.2, n),
    "pareto": lambda rng, n: (rng.pareto(1.5, n) + 1) * 10.0,
    "bimodal": bimodal,
}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_quantiles_within_one_percent_of_the_rank_sample(name: str) -> None:
    rng = np.random.default_rng(42)
    data = DATASETS[name](rng, 150_000)
    sk = Sketch.of(data)
    assert_quantiles(sk, data, (0.0, *QS, 1.0))
    assert sk.count == data.size
    assert sk.min == data.min() and sk.max == data.max()
    assert sk.mean == pytest.approx(data.mean(), rel=1e-12)
    # and against the plain exact quantile, the everyday reading of "1 %"
    exact = np.quantile(data, QS, method="inverted_cdf")
    assert np.all(np.abs(np.array(sk.quantiles(QS)) - exact) <= TOL * exact)


def test_every_value_lands_within_alpha_of_its_bucket_representative() -> None:
    rng = np.random.default_rng(1)
    v = np.exp(rng.uniform(math.log(1e-300), math.log(1e300), 200_000))
    v *= rng.choice([-1.0, 1.0], v.size)
    rep = key_values(keys_of(v))
    assert np.all(np.abs(rep - v) <= TOL * np.abs(v))


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=1e-300, max_value=1e300), st.booleans())
def test_single_value_round_trip(x: float, negative: bool) -> None:
    v = -x if negative else x
    rep = float(key_values(keys_of(np.array([v])))[0])
    assert abs(rep - v) <= TOL * abs(v)
    assert Sketch.of([v]).quantile(0.5) == v  # clamped to the exact min/max


def test_merges_equal_one_sketch_of_everything() -> None:
    rng = np.random.default_rng(7)
    data = np.concatenate([rng.lognormal(2, 1, 60_000), -rng.lognormal(1, 2, 20_000), [0.0] * 50])
    rng.shuffle(data)
    parts = np.array_split(data, 7)
    whole = Sketch.of(data)
    merged = Sketch.merged(Sketch.of(p) for p in parts)
    inplace = Sketch.of(parts[0])
    inplace.merge(*(Sketch.of(p) for p in parts[1:]))
    incremental = Sketch()
    for p in parts:
        incremental.add(p)
    for m in (merged, inplace, incremental):
        np.testing.assert_array_equal(m.keys, whole.keys)
        np.testing.assert_array_equal(m.counts, whole.counts)  # unit weights sum exactly
        assert (m.count, m.min, m.max) == (whole.count, whole.min, whole.max)
        assert m.sum == pytest.approx(whole.sum, rel=1e-9)
        assert m.quantiles(QS) == whole.quantiles(QS)
    s = summarise([Sketch.of(p) for p in parts], QS)
    assert s is not None and s.quantiles == whole.quantiles(QS) and s.count == whole.count
    assert_quantiles(merged, data)


def test_merging_nothing_and_empties() -> None:
    assert Sketch.merged([]).count == 0
    assert Sketch.merged([Sketch(), Sketch()]).quantiles(QS) == [None] * len(QS)
    assert summarise([Sketch()], QS) is None
    e = Sketch()
    assert e.mean is None and e.quantile(0.5) is None and e.num_buckets == 0


def test_integer_weights_equal_repeated_values() -> None:
    rng = np.random.default_rng(3)
    x = rng.lognormal(3, 1, 20_000)
    w = rng.integers(1, 10, x.size).astype(float)
    weighted = Sketch.of(x, w)
    repeated = Sketch.of(np.repeat(x, w.astype(int)))
    np.testing.assert_array_equal(weighted.keys, repeated.keys)
    np.testing.assert_allclose(weighted.counts, repeated.counts)
    assert weighted.count == pytest.approx(w.sum())
    assert weighted.mean == pytest.approx(repeated.mean)
    assert weighted.quantiles(QS) == repeated.quantiles(QS)


def test_fractional_weights_follow_the_weighted_cdf() -> None:
    rng = np.random.default_rng(4)
    x = rng.lognormal(3, 1, 100_000)
    w = 1 / rng.choice([1.0, 0.5, 0.1, 0.25], x.size)  # statsd sample rates
    sk = Sketch.of(x, w)
    order = np.argsort(x)
    xs, cw = x[order], np.cumsum(w[order])
    for q, v in zip(QS, sk.quantiles(QS), strict=True):
        i = int(np.searchsorted(cw, q * cw[-1]))
        cands = xs[max(i - 1, 0) : i + 2]
        assert np.any(np.abs(v - cands) <= TOL * cands)
    assert sk.count == pytest.approx(w.sum())
    assert sk.mean == pytest.approx(np.average(x, weights=w))


def test_negatives_and_zeros() -> None:
    rng = np.random.default_rng(5)
    neg = -rng.lognormal(1, 1, 40_000)
    pos = rng.lognormal(1, 1, 50_000)
    zeros = np.zeros(10_000)
    data = np.concatenate([neg, zeros, pos])
    rng.shuffle(data)
    sk = Sketch.of(data)
    assert sk.zero_count == 10_000
    assert_quantiles(sk, data, (0.0, 0.01, 0.2, 0.39, 0.45, *QS, 1.0))
    assert sk.quantile(0.45) == 0.0  # inside the run of zeros: exactly zero
    assert sk.min == data.min() and sk.max == data.max()
    # the key order is the value order, across the sign
    assert np.all(np.diff(sk.keys) > 0)
    only_neg = Sketch.of(neg)
    assert_quantiles(only_neg, neg)
    assert all(v < 0 for v in only_neg.quantiles(QS))


def test_huge_and_tiny_magnitudes() -> None:
    rng = np.random.default_rng(6)
    data = np.exp(rng.uniform(math.log(1e-9), math.log(1e300), 120_000))
    data[::3] *= -1
    sk = Sketch.of(data)
    assert_quantiles(sk, data, (0.0, 0.1, 0.3, *QS, 1.0))
    assert math.isfinite(sk.sum)
    extremes = [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308]
    big = Sketch.of(extremes)
    assert big.quantile(1.0) == 1.7976931348623157e308
    assert big.quantile(0.0) == -1.7976931348623157e308
    assert all(v is not None and math.isfinite(v) for v in big.quantiles(QS))


def test_non_finite_values_and_bad_weights_are_ignored_and_counted() -> None:
    sk = Sketch()
    ignored = sk.add([1.0, math.nan, 2.0, math.inf, -math.inf, 3.0])
    assert ignored == 3 and sk.count == 3 and sk.max == 3.0
    ignored = sk.add([4.0, 5.0, 6.0], [1.0, 0.0, math.nan])
    assert ignored == 2 and sk.count == 4
    with pytest.raises(ValueError):
        sk.add([1.0, 2.0], [1.0])


def test_bucketize_sums_weights_per_key() -> None:
    keys, counts = bucketize([1.0, 1.001, 1.0, 0.0, -1.0, 500.0], [1, 2, 3, 4, 5, 6])
    assert list(keys) == sorted(keys)
    assert counts.sum() == 21
    assert dict(zip(keys.tolist(), counts.tolist(), strict=True))[0] == 4


def test_memory_stays_bounded_after_ten_million_samples() -> None:
    rng = np.random.default_rng(8)
    sk = Sketch()
    for _ in range(10):
        sk.add(rng.lognormal(3.0, 1.0, 1_000_000))
    assert sk.count == 10_000_000
    # lognormal(sigma=1) over 10M samples spans about e^+-5.5: ~550 buckets of 2 %
    assert sk.num_buckets <= 1_000
    assert sk.nbytes <= 1_000 * 12
    # any data: at most one bucket per factor gamma of the range it covers
    wide = Sketch.of(np.exp(rng.uniform(math.log(1e-9), math.log(1e300), 2_000_000)))
    assert wide.num_buckets <= (math.log(1e300) - math.log(1e-9)) / LOG_GAMMA + 2
