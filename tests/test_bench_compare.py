"""bench/compare_trees.py: the paired before/after summary."""

from __future__ import annotations

import pytest

from bench_modules import load_bench


@pytest.fixture(scope="module")
def compare():
    return load_bench("compare_trees")


def test_ratios_are_paired_by_round(compare):
    # the machine doubled its speed between rounds: medians alone would mix that in, the
    # per-round ratios do not
    summary = compare.paired_summary([100.0, 200.0, 100.0], [110.0, 220.0, 110.0])
    assert summary["ratio_median"] == pytest.approx(1.1)
    assert summary["ratio_ci95"] == pytest.approx([1.1, 1.1])
    assert summary["before_median"] == 100.0 and summary["after_median"] == 110.0
    assert summary["rounds"] == 3


def test_unpaired_figures_are_refused(compare):
    with pytest.raises(ValueError, match="as many before as after"):
        compare.paired_summary([1.0, 2.0], [1.0])
