"""Wall time and peak memory of a stage."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psutil
import torch


@dataclass
class StageCost:
    seconds: float = 0.0
    peak_rss_mb: float = 0.0  # peak resident memory of the process during the stage
    peak_cuda_mb: float = 0.0


class StageMeter:
    """Measure a stage: wall time, and peak process memory sampled every 20 ms on a background thread.

    The resident-memory peak covers the whole process, so it includes what earlier stages still hold.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.cost = StageCost()
        self.process = psutil.Process()
        self.stop = threading.Event()

    def sample(self) -> None:
        while not self.stop.wait(self.interval):
            self.cost.peak_rss_mb = max(self.cost.peak_rss_mb, self.process.memory_info().rss / 2**20)

    def __enter__(self) -> "StageMeter":
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.cost.peak_rss_mb = self.process.memory_info().rss / 2**20
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.cost.seconds = time.perf_counter() - self.start
        self.stop.set()
        self.thread.join()
        self.cost.peak_rss_mb = max(self.cost.peak_rss_mb, self.process.memory_info().rss / 2**20)
        if torch.cuda.is_available():
            self.cost.peak_cuda_mb = torch.cuda.max_memory_allocated() / 2**20
