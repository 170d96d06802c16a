"""How the long file commands (`bundle create|load`, `backup`, `restore`) talk to the operator:
messages, progress bars, the one question they ask, the time each step took, and byte counts as a
person reads them."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

# Called with the number of bytes just processed, to move a progress bar.
Advance = Callable[[int], None]


@dataclass
class OperatorUI:
    """How the commands talk to the operator; the defaults stay silent and answer no."""

    say: Callable[[str], None] = lambda text: None
    progress: Callable[[str, int], AbstractContextManager[Advance | None]] = lambda description, total: nullcontext()
    confirm: Callable[[str], bool] = lambda question: False
    timings: dict[str, float] = field(default_factory=dict)

    def timed(self, name: str, action: Callable[[], object]) -> object:
        start = time.monotonic()
        result = action()
        self.timings[name] = round(time.monotonic() - start, 2)
        return result


def human_size(n: int) -> str:
    if n >= 1e8:
        return f"{n / 1e9:.2f} GB"
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"
