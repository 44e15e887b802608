"""RunPod's GPU catalogue (`GET /v2/catalog/gpus?include=AVAILABILITY&product=POD`) as data.

`catalog()` is the public entry point (re-exported as `podmagic.backends.runpod.catalog`): the
GPU types with per-cloud list prices ($/GPU-hour), per-cloud maximum counts, and current pod
stock overall and per datacenter (`NONE`/`LOW`/`MEDIUM`/`HIGH`), as frozen dataclasses.
Prices are list prices for one GPU; the rate a pod is billed is its own `cost`.

May import `backends.runpod.api`; never `run` or `ui`.
"""

from __future__ import annotations


from podmagic.backends.runpod.api import RunPodAPI
from podmagic.records import record


@record
class DatacenterStock:
    id: str
    name: str
    availability: str


@record
class GpuOffer:
    """One GPU type as the catalogue describes it for pods."""

    id: str
    name: str
    memory_gb: int
    secure_usd_per_hour: float | None
    community_usd_per_hour: float | None
    max_count_secure: int
    max_count_community: int
    availability: str | None
    datacenters: tuple[DatacenterStock, ...] = ()

    def usd_per_hour(self, cloud: str = "SECURE", gpu_count: int = 1) -> float | None:
        price = self.community_usd_per_hour if cloud == "COMMUNITY" else self.secure_usd_per_hour
        return None if price is None else round(price * gpu_count, 4)

    def stock_in(self, datacenter: str) -> str:
        """Availability in one datacenter (`NONE` when the catalogue does not list it there)."""
        return next((d.availability for d in self.datacenters if d.id == datacenter), "NONE")


def catalog(gpu_ids: tuple[str, ...] | list[str] | None = None, *, cloud: str = "SECURE", gpu_count: int = 1,
            api: RunPodAPI | None = None) -> tuple[GpuOffer, ...]:
    """GPU types with price and pod availability for `cloud` × `gpu_count` (all, or those in `gpu_ids`,
    in that order). Uses `RUNPOD_API_KEY` / ~/.runpod/config.toml and `RUNPOD_API_BASE_URL`."""
    client = api or RunPodAPI()
    try:
        offers = tuple(offer(g) for g in client.gpu_types(cloud=cloud, gpu_count=gpu_count))
    finally:
        if api is None:
            client.close()
    if gpu_ids is None:
        return offers
    by_id = {o.id: o for o in offers}
    return tuple(by_id[g] for g in gpu_ids if g in by_id)


def gpu_types(*, cloud_type: str = "SECURE", gpu_count: int = 1) -> list[dict]:
    """The raw `GpuType` objects (REST v2 shape), with availability for pods."""
    client = RunPodAPI()
    try:
        return client.gpu_types(cloud=cloud_type if cloud_type in ("SECURE", "COMMUNITY") else "SECURE",
                                gpu_count=gpu_count)
    finally:
        client.close()


def offer(gpu: dict) -> GpuOffer:
    """One `GpuType` object → `GpuOffer`."""
    price, most = gpu.get("price") or {}, gpu.get("maxCount") or {}
    return GpuOffer(
        id=str(gpu["id"]), name=str(gpu.get("name") or gpu["id"]), memory_gb=int(gpu.get("memory") or 0),
        secure_usd_per_hour=_num(price.get("secure")) if gpu.get("secure", True) else None,
        community_usd_per_hour=_num(price.get("community")) if gpu.get("community", True) else None,
        max_count_secure=int(most.get("secure") or 0), max_count_community=int(most.get("community") or 0),
        availability=gpu.get("availability"),
        datacenters=tuple(DatacenterStock(str(d["id"]), str(d.get("name") or d["id"]), str(d.get("availability")))
                          for d in gpu.get("dataCenters") or ()),
    )


def _num(value) -> float | None:
    return None if value is None else float(value)
