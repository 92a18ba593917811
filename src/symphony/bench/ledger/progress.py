"""Wall-clock budgets and the progress lines the benchmark prints while it runs."""

from __future__ import annotations

import time

from rich.console import Console


class _Budget:
    """A wall-clock allowance for one size; phases check it and are skipped past it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def over(self) -> bool:
        return self.elapsed() > self.seconds


class _Progress:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.start = time.monotonic()

    def __call__(self, message: str) -> None:
        self.console.print(f"[dim]{time.monotonic() - self.start:7.1f}s[/dim] {message}", highlight=False)
