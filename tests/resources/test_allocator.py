"""The allocator keeps freed memory for reuse, measured as the process's resident set."""

from __future__ import annotations

import subprocess
import sys

import pytest

from resources.allocator import keep_freed_memory

# a 256 MiB temporary, freed: how much of it stays resident (MiB)
RETAINED = """
import sys
import numpy as np
import psutil
from resources.allocator import keep_freed_memory
applied = keep_freed_memory(int(sys.argv[1]))
rss = lambda: psutil.Process().memory_info().rss / 2**20
before = rss()
a = np.ones(2**25)  # 256 MiB, touched
del a
print(applied, rss() - before)
"""


def retained_after_free(mb: int) -> tuple[bool, float]:
    out = subprocess.run(
        [sys.executable, "-c", RETAINED, str(mb)], capture_output=True, text=True, check=True
    )
    applied, retained = out.stdout.split()
    return applied == "True", float(retained)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_freed_memory_stays_for_reuse_only_when_asked():
    applied, kept = retained_after_free(1024)
    default_applied, default_kept = retained_after_free(0)
    assert applied and not default_applied
    assert kept > 200  # the heap served it and kept it
    assert default_kept < 50  # glibc unmapped it


def test_zero_leaves_the_defaults():
    assert keep_freed_memory(0) is False
