"""Runs of equal values in sorted (or grouped) numpy arrays, for the kernels that Spark
partitions run: a sort and a scan instead of ``np.unique``, whose hash-based path in
numpy 2.4 is tens of times slower on millions of int64 values."""

from __future__ import annotations

import numpy as np


def run_starts(values: np.ndarray) -> np.ndarray:
    """Positions where a run of equal values begins (empty for empty ``values``)."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero(np.r_[True, values[1:] != values[:-1]])


def run_ranks(values: np.ndarray) -> np.ndarray:
    """Each value's position within its run of equal values (0 for a run's first)."""
    starts = run_starts(values)
    return np.arange(len(values)) - np.repeat(starts, np.diff(np.r_[starts, len(values)]))
