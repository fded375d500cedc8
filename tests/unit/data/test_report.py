from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from ftcli.data.check.report import Distribution


@pytest.mark.parametrize("seed", range(5))
def test_distribution_from_counts_matches_numpy(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.choice([rng.randint(1, 50), rng.randint(100, 9000)]) for _ in range(rng.randint(1, 400))]
    dist = Distribution.of(Counter(values))
    array = np.array(values)
    assert (dist.count, dist.total, dist.min, dist.max) == (len(values), sum(values), min(values), max(values))
    assert dist.mean == round(float(array.mean()), 2)
    assert [dist.p5, dist.median, dist.p95] == pytest.approx(list(np.percentile(array, [5, 50, 95])))
    counts, _ = np.histogram(array, bins=min(10, len(set(values))))
    assert [n for _, _, n in dist.histogram] == counts.tolist()


def test_percentiles_are_not_deciles() -> None:
    dist = Distribution.of(Counter(range(1, 101)))  # 1..100
    assert dist.p5 == pytest.approx(5.95) and dist.p95 == pytest.approx(95.05)


def test_empty() -> None:
    assert Distribution.of(Counter()).count == 0
