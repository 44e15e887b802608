"""Free GPUs per (GPU type, datacenter), taken by creates and resumes.

A running pod holds its GPUs; a stop, a host failure or a terminate gives
them back. A count of `None` is unlimited. Each combination may carry the
message its stock-out answers with (RunPod's wording varies by path).
"""

from __future__ import annotations

import threading
from typing import Iterable, Mapping

from podmagic.errors import PodmagicError
from podmagic.testing.sim.catalog import NO_INSTANCES, NOT_ENOUGH_GPUS


class OutOfStock(PodmagicError):
    """No free GPUs where they were asked for; the message is RunPod's."""


class Stock:
    def __init__(self, datacenters: Iterable[str], counts: Mapping | None = None,
                 default: int | None = None):
        self.datacenters = tuple(datacenters)
        self.default = default
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int | None] = dict(counts or {})
        self._messages: dict[tuple[str, str], str] = {}

    def set(self, gpu_id: str, dc: str, count: int | None, message: str | None = None) -> None:
        with self._lock:
            self._counts[(gpu_id, dc)] = count
            if message is None:
                self._messages.pop((gpu_id, dc), None)
            else:
                self._messages[(gpu_id, dc)] = message

    def free(self, gpu_id: str, dc: str) -> int | None:
        with self._lock:
            return self._counts.get((gpu_id, dc), self.default) if dc in self.datacenters else 0

    def snapshot(self) -> dict[str, int | None]:
        with self._lock:
            return {f"{g}@{d}": n for (g, d), n in sorted(self._counts.items())}

    def acquire(self, gpu_id: str, dc: str | None, count: int) -> str:
        """Take `count` GPUs in `dc` (or the first DC with room); its id."""
        candidates = [dc] if dc else list(self.datacenters)
        with self._lock:
            for name in candidates:
                if name not in self.datacenters:
                    continue
                free = self._counts.get((gpu_id, name), self.default)
                if free is None or free >= count:
                    if free is not None:
                        self._counts[(gpu_id, name)] = free - count
                    return name
            key = (gpu_id, dc) if dc else None
            raise OutOfStock(self._messages.get(key, NO_INSTANCES) if key else NO_INSTANCES)

    def reacquire(self, gpu_id: str, dc: str, count: int) -> None:
        """A resume: the pod's own host must have the GPUs free again."""
        try:
            self.acquire(gpu_id, dc, count)
        except OutOfStock:
            raise OutOfStock(NOT_ENOUGH_GPUS) from None

    def release(self, gpu_id: str, dc: str, count: int) -> None:
        with self._lock:
            free = self._counts.get((gpu_id, dc), self.default)
            if free is not None:
                self._counts[(gpu_id, dc)] = free + count
