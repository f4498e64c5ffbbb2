"""Metadata as a person reads it: floats rounded to what the measurement supports."""

from __future__ import annotations

import math
from typing import Any

DIGITS = 4


def rounded(metadata: dict[str, Any], digits: int = DIGITS) -> dict[str, Any]:
    """``metadata`` with every plain float rounded (``0.11505085974931717`` -> ``0.1151``)."""
    return {
        key: round(value, digits) if isinstance(value, float) and math.isfinite(value) else value
        for key, value in metadata.items()
    }
