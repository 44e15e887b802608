"""What the simulated RunPod sells: GPU types, datacenters, prices, stock.

Prices are plausible secure/community on-demand rates in USD per GPU-hour.
Stock is a count of free GPUs per (GPU type, datacenter); `None` means
unlimited. The error texts are RunPod's own, verbatim, because clients
(runpod-deploy, podmagic) classify them by substring.
"""

from __future__ import annotations

from typing import Mapping

from podmagic.records import record

NO_INSTANCES = (
    "There are no longer any instances available with the requested specifications. "
    "Please refresh and try again."
)
NO_RESOURCES = (
    "This machine does not have the resources to deploy your pod. "
    "Please try a different machine"
)
NOT_ENOUGH_GPUS = "There are not enough free GPUs on the host machine to start this pod."
CAPACITY_MESSAGES = (NO_INSTANCES, NO_RESOURCES, NOT_ENOUGH_GPUS)

VOLUME_USD_PER_GB_MONTH = 0.20
"""Volume disk of a stopped pod, RunPod's idle rate ($/GB per 30-day month)."""
RUNNING_VOLUME_USD_PER_GB_MONTH = 0.10
"""Volume and container disk of a running pod ($/GB per 30-day month)."""


@record
class GpuType:
    """One GPU type as `gpuTypes` describes it."""

    id: str
    display_name: str
    memory_gb: int
    secure_price: float
    community_price: float
    max_gpu_count: int = 8
    manufacturer: str = "Nvidia"
    cuda_cores: int = 0

    def price(self, cloud_type: str) -> float:
        """On-demand $/GPU-hour for a cloud type (ALL takes the cheaper)."""
        if cloud_type == "COMMUNITY":
            return self.community_price
        if cloud_type == "SECURE":
            return self.secure_price
        return min(self.secure_price, self.community_price)

    def as_rest(self, stock: dict[str, int | None] | None = None, gpu_count: int = 1) -> dict:
        """A `GpuType` of `GET /v2/catalog/gpus`; with `stock` (dc → free GPUs), its availability."""
        gpu = {
            "id": self.id, "name": self.display_name, "pool": None, "manufacturer": "NVIDIA",
            "memory": self.memory_gb, "secure": True, "community": True,
            "price": {"secure": self.secure_price, "community": self.community_price},
            "maxCount": {"secure": self.max_gpu_count, "community": min(self.max_gpu_count, 4)},
        }
        if stock is not None:
            levels = {dc: level(free, gpu_count) for dc, free in stock.items()}
            offered = [{"id": dc, "name": dc, "availability": lv} for dc, lv in levels.items() if lv != "NONE"]
            gpu["availability"] = max(levels.values(), key=LEVELS.index, default="NONE")
            if offered:
                gpu["dataCenters"] = offered
        return gpu

    def as_graphql(self, gpu_count: int = 1) -> dict:
        return {
            "id": self.id, "displayName": self.display_name, "memoryInGb": self.memory_gb,
            "maxGpuCount": self.max_gpu_count, "manufacturer": self.manufacturer,
            "cudaCores": self.cuda_cores, "secureCloud": True, "communityCloud": True,
            "securePrice": self.secure_price, "communityPrice": self.community_price,
            "oneMonthPrice": round(self.secure_price * 0.9, 2),
            "threeMonthPrice": round(self.secure_price * 0.85, 2),
            "oneWeekPrice": round(self.secure_price * 0.95, 2),
            "communitySpotPrice": round(self.community_price * 0.5, 2),
            "secureSpotPrice": round(self.secure_price * 0.5, 2),
            "lowestPrice": {
                "minimumBidPrice": round(self.community_price * 0.5 * gpu_count, 3),
                "uninterruptablePrice": round(self.community_price * gpu_count, 3),
            },
        }


LEVELS = ("NONE", "LOW", "MEDIUM", "HIGH")


def level(free: int | None, gpu_count: int = 1) -> str:
    """A stock count as the catalogue's AvailabilityLevel."""
    if free is None:
        return "HIGH"
    units = free // max(gpu_count, 1)
    return "NONE" if units <= 0 else "LOW" if units < 3 else "MEDIUM" if units < 8 else "HIGH"


DEFAULT_GPUS: tuple[GpuType, ...] = (
    GpuType("NVIDIA H100 80GB HBM3", "H100 SXM", 80, 2.99, 2.69, cuda_cores=16896),
    GpuType("NVIDIA H100 PCIe", "H100 PCIe", 80, 2.39, 1.99, cuda_cores=14592),
    GpuType("NVIDIA A100 80GB PCIe", "A100 PCIe", 80, 1.64, 1.19, cuda_cores=6912),
    GpuType("NVIDIA A100-SXM4-80GB", "A100 SXM", 80, 1.89, 1.39, cuda_cores=6912),
    GpuType("NVIDIA L40S", "L40S", 48, 0.86, 0.79, cuda_cores=18176),
    GpuType("NVIDIA RTX A6000", "RTX A6000", 48, 0.49, 0.33, cuda_cores=10752),
    GpuType("NVIDIA GeForce RTX 4090", "RTX 4090", 24, 0.69, 0.34, cuda_cores=16384),
)

DEFAULT_DATACENTERS: tuple[str, ...] = (
    "EU-RO-1", "EU-SE-1", "EU-NL-1", "US-MD-1", "US-TX-3", "US-CA-2", "CA-MTL-1",
)

Stock = Mapping[tuple[str, str], "int | None"]

