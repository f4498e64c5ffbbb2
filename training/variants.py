"""Named model variants a run can train side by side: an encoder kind, with or without
pretrained (TransE) concept features. ``semantic_no_pretrain`` is the ablation of KG
pretraining: the same model fed random concept features of the same shape and scale."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from training.model import KINDS

NO_PRETRAIN = "_no_pretrain"


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str
    pretrained: bool

    @classmethod
    def parse(cls, name: str) -> Variant:
        kind = name.removesuffix(NO_PRETRAIN)
        if kind not in KINDS:
            allowed = [k + s for k in KINDS for s in ("", NO_PRETRAIN)]
            raise ValueError(f"Model variant {name!r} is not one of {allowed}")
        return cls(name, kind, not name.endswith(NO_PRETRAIN))


def concept_inputs(pretrained: dict[str, Tensor], variant: Variant, seed: int) -> dict[str, Tensor]:
    """The concept features a variant trains on: pretrained, or random with matching scale."""
    if variant.pretrained:
        return pretrained
    gen = torch.Generator().manual_seed(seed)
    return {
        ctype: torch.randn(features.shape, generator=gen) * features.std()
        for ctype, features in sorted(pretrained.items())
    }
