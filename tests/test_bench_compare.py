"""bench/compare_trees.py: the paired before/after summary."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def compare():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_compare_trees",
                                                  BENCH / "compare_trees.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
