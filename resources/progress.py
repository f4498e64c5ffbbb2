"""Progress of long steps: a tqdm bar with ETA where a person watches a terminal (the demo,
``dagster job execute``), and a compact Dagster log: one INFO line per fifth of the way,
every step at DEBUG."""

from __future__ import annotations

import sys
from collections.abc import Callable

from tqdm import tqdm

STEP_LINES = 5  # INFO lines per bar


class Bars:
    """Bars of one asset step; ``with Bars(log) as bars: train(progress=bars.new(...))``."""

    def __init__(self, log) -> None:
        self.log = log
        self.open: list[tqdm] = []

    def new(self, label: str, total: int, unit: str = "epoch") -> Callable[[int, str], None]:
        """A reporter ``(step, text)`` for ``total`` steps of ``label``; the previous bar
        ends here (steps run one after another, and an open bar would push the next down)."""
        self.close()
        bar = tqdm(total=total, desc=label, unit=unit, file=sys.stderr, mininterval=1.0,
                   leave=False, dynamic_ncols=True)  # fmt: skip
        self.open.append(bar)
        every = max(1, total // STEP_LINES)

        def report(step: int, text: str) -> None:
            bar.update(1)
            bar.set_postfix_str(text, refresh=False)
            done = bar.n
            line = f"{label} {unit} {step} ({done}/{total}): {text}"
            if done % every == 0 or done == 1:
                self.log.info(line)
            else:
                self.log.debug(line)

        return report

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for bar in self.open:
            bar.close()
        self.open = []
