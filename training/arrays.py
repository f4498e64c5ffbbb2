"""Array helpers that the graph code runs on millions of ids."""

from __future__ import annotations

import numpy as np


def unique_ints(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer array (any shape; flattened), by one sort.

    ``np.unique`` does the same, but numpy 2.4's hash-based path took 15 s for 4 million
    distinct int64 values on the 2-core development machine, where a sort took 0.25 s.
    """
    flat = np.sort(np.asarray(values).ravel())
    if flat.size == 0:
        return flat
    return flat[np.concatenate([[True], flat[1:] != flat[:-1]])]
