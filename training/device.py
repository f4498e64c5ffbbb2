"""Device choice: CUDA when present, else CPU; ``COGRAPH_DEVICE`` overrides."""

from __future__ import annotations

import torch

from settings import current


def pick_device(preference: str | None = None) -> torch.device:
    choice = (preference or current().device).lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"Device {choice!r} requested but CUDA is not available")
    return torch.device(choice)


def device_name(device: torch.device) -> str:
    """``cpu`` or the CUDA card's name, for reports."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type
