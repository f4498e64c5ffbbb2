r"""The learned relevance (MUIRML, :mod:`training.muirml`) as the service runs it: numpy,
no torch, no exploration noise.

The first layer splits over its input ``[u ; v ; u ⊙ v ; 0]``:

.. math::
    W_0 [u ; v ; u \odot v ; 0] + b_0 = (W_u u + b_0) + W_v v + W_{uv} (u \odot v)

so a query's part ``W_u u + b_0`` is computed once (:meth:`NeuralMetric.user_terms`) and
each scored item costs two ``d × hidden`` products and the two hidden layers. The relevance
is the scenario's attention-weighted sum of the behaviour probabilities.

:meth:`NeuralMetric.on` moves the pair scoring to a CUDA card where the service has one
(:func:`scoring_device`; :class:`~serving.neural_metric_torch.TorchMetric`).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storage.layout import RELEVANCE_MODEL
from storage.versions import newest_loaded


@dataclass(frozen=True)
class NeuralMetric:
    arrays: dict[str, np.ndarray]
    version: str = ""
    device: str = "cpu"  # where pair_scores runs (numpy here; a card: TorchMetric)

    @property
    def dim(self) -> int:
        return int(self.arrays["dim"])

    @property
    def embedding_version(self) -> str:
        """The embeddings' model version it was trained on: it fits only those."""
        return str(self.arrays["embedding_version"])

    @property
    def behaviours(self) -> list[str]:
        return self.arrays["behaviours"].tolist()

    def on(self, device: str) -> NeuralMetric:
        """This metric scoring its pairs on ``device``: itself on ``cpu`` (numpy), else in
        torch on that card."""
        if device == self.device:
            return self
        if device == "cpu":
            return NeuralMetric(self.arrays, self.version)
        from serving.neural_metric_torch import TorchMetric  # torch only where a card is

        return TorchMetric(self.arrays, self.version, device)

    def user_terms(self, users: np.ndarray) -> np.ndarray:
        """``(Q, d)`` users -> their part of the first layer ``(Q, hidden)``."""
        return users @ self.arrays["w0"][:, : self.dim].T + self.arrays["b0"]

    def pair_scores(self, users: np.ndarray, terms: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Relevance of row-aligned users ``(n, d)`` (with their :meth:`user_terms`) and
        items ``(n, d)``."""
        a, d = self.arrays, self.dim
        w_item, w_both = a["w0"][:, d : 2 * d], a["w0"][:, 2 * d : 3 * d]
        hidden = terms + items @ w_item.T + (users * items) @ w_both.T
        hidden = np.maximum(np.maximum(hidden, 0.0) @ a["w1"].T + a["b1"], 0.0)
        return (1.0 / (1.0 + np.exp(-(hidden @ a["w2"].T + a["b2"])))) @ a["scenario"]

    def scores(self, user: np.ndarray, items: np.ndarray, chunk: int = 65_536) -> np.ndarray:
        """One user's relevance to every row of ``items`` ``(N, d)`` (brute force)."""
        terms = self.user_terms(user[None, :])
        out = np.empty(len(items), dtype=np.float32)
        for start in range(0, len(items), chunk):
            part = np.asarray(items[start : start + chunk], dtype=np.float32)
            out[start : start + len(part)] = self.pair_scores(user[None, :], terms, part)
        return out


NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")


def scoring_device(preference: str) -> str:
    """``cpu`` or the CUDA device the learned relevance scores on, for the ``device``
    setting (``auto``, ``cpu``, ``cuda[:N]``). ``auto`` is CUDA where the machine has an
    NVIDIA driver and torch sees a card; torch is imported only then, so that a service on
    a machine without one starts as fast and as small as before."""
    choice = preference.lower()  # checked by the settings module
    if choice == "cpu" or (choice == "auto" and not NVIDIA_DRIVER.exists()):
        return "cpu"
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return "cuda" if choice == "auto" else choice
    if choice == "auto":
        return "cpu"
    raise ValueError(f"device {preference!r} requested but CUDA is not available")


def load_metric(folder: Path) -> NeuralMetric:
    with np.load(folder / RELEVANCE_MODEL) as data:
        arrays = {name: data[name] for name in data.files}
    return NeuralMetric(arrays, folder.name)


def newest_metric(root: Path | None) -> NeuralMetric | None:
    """The newest published relevance model under ``root``, or None (also when it does not
    load: the service then answers strategy neural with a 409 and everything else as before)."""
    return newest_loaded(root, RELEVANCE_MODEL, load_metric)
