"""Calendar months of a bar series: where the monthly rules decide and the monthly
rebalances fill."""

from __future__ import annotations

import numpy as np

BARS_PER_MONTH = 21  # a "month" of a series without timestamps


def month_ends(timestamps: np.ndarray | None, num_bars: int) -> np.ndarray:
    """Rows that are the last of their calendar month in the series (bool [num_bars]).

    The exchange calendar is known ahead, so the last session of a month is known at its
    close; prices after it never are. The series' last row is not a month end (nothing
    follows it to say so). Without timestamps every 21st row is one.
    """
    if timestamps is None:
        return (np.arange(num_bars) + 1) % BARS_PER_MONTH == 0
    months = np.asarray(timestamps).astype("datetime64[M]")
    ends = np.zeros(num_bars, dtype=bool)
    ends[:-1] = months[1:] != months[:-1]
    return ends


__all__ = ["BARS_PER_MONTH", "month_ends"]
