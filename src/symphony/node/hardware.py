"""A node's hardware, detected at start and measured as it works (the capability vector's hardware block).

- **Detected** once at start (``detect_hardware``), where ``--memory-gb`` / ``--accelerator`` are not
  given: with an NVIDIA GPU (``nvidia-smi`` on PATH and answering) the memory is the GPUs' total memory
  (what bounds the model) and the accelerator is the first GPU's name; otherwise the memory is the
  machine's total RAM and the accelerator ``apple`` on Apple silicon (unified memory, Metal) or ``cpu``.
  Cores are ``os.cpu_count()`` (``detected_cores``), always detected and published (``Hardware.cores``).
- **Measured**: tokens/s is an EMA of completion_tokens / latency over the node's own model calls
  (``ThroughputMeter``, fed by ``node.metrics.MeteredModel``); the runtime republishes its record
  (hardware + vector, a ledger UPDATE) when the EMA moves more than ``threshold`` from the published
  figure, at most once per ``min_interval_s``.
- **Coarsened** for publication when privacy noise is on (``coarsen_hardware``).
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from symphony.capability.vector import accelerator_kind, coarse_figure
from symphony.protocol.messages import Hardware

#: the wire cap of ``Hardware.tokens_per_s``: an instant stand-in model (scripted:) measures near infinity
MAX_TOKENS_PER_S = 1e7
NVIDIA_SMI_QUERY = ("nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits")


@dataclass(frozen=True)
class DetectedHardware:
    """What ``detect_hardware`` found, and where the memory figure comes from (``memory_source``)."""

    memory_gb: float
    cores: int
    accelerator: str
    memory_source: str  # "gpu" (total GPU memory) or "ram" (total system memory)


def total_ram_gb() -> float:
    """Total physical memory, from ``sysconf`` (Linux, macOS); 0.0 where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 0.0


def nvidia_gpus(run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> list[tuple[str, float]]:
    """``(name, memory GB)`` of each NVIDIA GPU by ``nvidia-smi``; [] without one, or when it fails or hangs."""
    if shutil.which(NVIDIA_SMI_QUERY[0]) is None:
        return []
    try:
        done = run(list(NVIDIA_SMI_QUERY), capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in done.stdout.splitlines():
        name, _, mib = line.rpartition(",")
        try:
            gpus.append((name.strip(), float(mib) / 1024))
        except ValueError:  # "[N/A]" and the like: not a figure we can publish
            continue
    return [(name, gb) for name, gb in gpus if name and math.isfinite(gb) and gb > 0]


def detected_cores() -> int:
    """The machine's logical CPU cores (1 where the platform does not say)."""
    return os.cpu_count() or 1


def detect_hardware(run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> DetectedHardware:
    """The machine's memory, cores and accelerator (see the module docstring for which memory)."""
    cores = detected_cores()
    gpus = nvidia_gpus(run)
    if gpus:
        return DetectedHardware(round(sum(gb for _, gb in gpus), 1), cores, gpus[0][0][:64], "gpu")
    apple = platform.system() == "Darwin" and platform.machine() == "arm64"
    return DetectedHardware(round(total_ram_gb(), 1), cores, "apple" if apple else "cpu", "ram")


def coarsen_hardware(hw: Hardware) -> Hardware:
    """The published hardware when privacy noise is on: figures (cores too) down to powers of two, the
    accelerator to its kind ("NVIDIA H100 80GB HBM3" -> "nvidia"), so the record does not single out a machine."""
    return Hardware(memory_gb=coarse_figure(hw.memory_gb), accelerator=accelerator_kind(hw.accelerator),
                    tokens_per_s=coarse_figure(hw.tokens_per_s), cores=int(coarse_figure(hw.cores)))


class ThroughputMeter:
    """EMA of the model's tokens/s, and when it has moved enough to republish.

    ``alpha`` weighs the history (as the skill EMA): with 0.8 a lasting change shows within a few calls.
    The first measurement is due at once (the record starts at 0 tok/s); later ones when the EMA is
    more than ``threshold`` (relative) away from the published figure, at most once per ``min_interval_s``.
    """

    def __init__(self, *, alpha: float = 0.8, threshold: float = 0.25, min_interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not (0.0 <= alpha < 1.0 and threshold > 0 and min_interval_s >= 0):
            raise ValueError("need 0 <= alpha < 1, threshold > 0 and min_interval_s >= 0")
        self.alpha, self.threshold, self.min_interval_s = alpha, threshold, min_interval_s
        self.clock = clock
        self.tokens_per_s = 0.0  # the EMA; 0 until the first call that produced tokens
        self.published = 0.0
        self.published_at = -math.inf
        self._moved: anyio.Event | None = None  # made by the waiter: an Event needs a running event loop

    def observe(self, completion_tokens: int, seconds: float) -> None:
        """One model call's output; calls without tokens or time (errors, cached replies) say nothing."""
        if completion_tokens <= 0 or not (math.isfinite(seconds) and seconds > 0):
            return
        rate = min(completion_tokens / seconds, MAX_TOKENS_PER_S)
        self.tokens_per_s = rate if self.tokens_per_s == 0 else self.alpha * self.tokens_per_s + (1 - self.alpha) * rate
        if self._moved is not None and self.moved():
            self._moved.set()

    def moved(self) -> bool:
        """Whether the EMA is materially away from the published figure (any figure beats none)."""
        if self.published == 0:
            return self.tokens_per_s > 0
        return abs(self.tokens_per_s - self.published) > self.threshold * self.published

    async def next_publication(self) -> float:
        """Wait until a figure is due (moved, and ``min_interval_s`` since the last), mark it published, return it."""
        while True:
            if not self.moved():
                self._moved = anyio.Event()
                await self._moved.wait()
            await anyio.sleep(max(0.0, self.published_at + self.min_interval_s - self.clock()))
            if self.moved():  # it may have come back meanwhile
                self.published, self.published_at = self.tokens_per_s, self.clock()
                return self.published
