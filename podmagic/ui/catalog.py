"""RunPod's GPU catalogue for people: stock × price tables, the inventory of a spec, the estimate.

The data is REST v2's `GET /v2/catalog/gpus?include=AVAILABILITY&product=POD&cloud=…` answer
(`GpuType` objects: `id`, `name`, `memory`, `price{secure,community}`, `availability`,
`dataCenters[{id, availability}]`), fetched by the RunPod backend (`backends.runpod`); this module
turns it into `Gpu` rows and decides nothing about money. Pure functions except `fetch`, which
asks the backend. May import `spec` data and `backends.runpod` (lazily, in `fetch`); no IPython.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from podmagic.errors import PodmagicError, close_matches
from podmagic.records import field, record

LEVELS = ("HIGH", "MEDIUM", "LOW", "NONE")
AVAILABLE = frozenset({"HIGH", "MEDIUM", "LOW"})
"""runpod-deploy counts High/Medium/Low as in stock; anything else (none, out, unavailable) is not."""
EXIT_STOCK_OUT = 3


@record
class Gpu:
    id: str
    name: str
    memory_gb: int | None
    price: float | None
    """$/GPU-hour on the cloud type asked for (None: no price known)."""
    availability: str | None = None
    datacenters: Mapping[str, str] = field(default_factory=dict)
    """Datacenter id → stock level, only those that list this GPU (None: stock not reported)."""

    def stock(self, dc: str) -> str:
        """'available', 'low', 'stock-out' or 'not listed' in one datacenter."""
        level = self.datacenters.get(dc)
        if level is None:
            return "not listed"
        if level == "LOW":
            return "low"
        return "available" if level in AVAILABLE else "stock-out"


@record
class Catalog:
    cloud_type: str
    gpus: tuple[Gpu, ...]

    def get(self, gpu_id: str) -> Gpu | None:
        return next((g for g in self.gpus if g.id == gpu_id), None)

    def datacenters(self) -> list[str]:
        return sorted({dc for g in self.gpus for dc in g.datacenters})


def _level(value: Any) -> str:
    text = str(value or "").upper()
    return text if text in LEVELS else "NONE"


def from_gpu_types(items: Iterable[Mapping[str, Any]], cloud_type: str) -> Catalog:
    """REST v2 `GpuType` objects → a Catalog (prices for `cloud_type`, per-datacenter stock)."""
    key = "community" if cloud_type == "COMMUNITY" else "secure"
    gpus = []
    for item in items:
        price = (item.get("price") or {}).get(key)
        dcs = {str(d["id"]): _level(d.get("availability")) for d in item.get("dataCenters") or () if d.get("id")}
        gpus.append(Gpu(str(item["id"]), str(item.get("name") or item["id"]), item.get("memory"),
                        float(price) if isinstance(price, (int, float)) and price > 0 else None,
                        _level(item["availability"]) if item.get("availability") else None, dcs))
    return Catalog(cloud_type, tuple(gpus))




def fetch(cloud_type: str = "SECURE", gpu_count: int = 1) -> Catalog:
    """The live catalogue from the RunPod backend (REST v2, its API key and base URL)."""
    from podmagic.backends import runpod as backend

    return from_offers(backend.catalog(cloud=cloud_type, gpu_count=gpu_count), cloud_type)


def from_offers(offers: Iterable[Any], cloud_type: str) -> Catalog:
    """The backend's `GpuOffer`s (id, name, memory_gb, usd_per_hour(cloud), availability,
    datacenters[id, availability]) → a Catalog."""
    gpus = tuple(Gpu(o.id, o.name, o.memory_gb or None, o.usd_per_hour(cloud_type),
                     _level(o.availability) if o.availability else None,
                     {d.id: _level(d.availability) for d in o.datacenters}) for o in offers)
    return Catalog(cloud_type, gpus)


# ---------------------------------------------------------------- tables


def _price(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


def table(cat: Catalog, datacenter: str | None = None, *, prices: bool = True, gpu_filter: str | None = None,
          datacenters: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows GPU × datacenter (stock, $/h), sorted HIGH → LOW then by price; filterable."""
    want = [datacenter] if datacenter else list(datacenters or cat.datacenters())
    rows = []
    for g in cat.gpus:
        if gpu_filter and gpu_filter.lower() not in f"{g.id} {g.name}".lower():
            continue
        for dc in want:
            if dc not in g.datacenters:
                continue
            level = g.datacenters.get(dc, "?")
            rows.append({"gpu_id": g.id, "name": g.name, "memory_gb": g.memory_gb, "datacenter": dc,
                         "stock": level, **({"usd_per_hour": g.price} if prices else {})})
    order = {level: i for i, level in enumerate(LEVELS)}
    rows.sort(key=lambda r: (order.get(r["stock"], 9), r.get("usd_per_hour") or 1e9, r["gpu_id"], r["datacenter"]))
    return rows


def table_columns(prices: bool = True) -> tuple[tuple[str, str], ...]:
    cols = (("gpu_id", "GPU"), ("memory_gb", "GB"), ("datacenter", "datacenter"), ("stock", "stock"))
    return cols + ((("usd_per_hour", "$/h"),) if prices else ())


def price_rows(cat: Catalog) -> list[dict[str, Any]]:
    rows = [{"gpu_id": g.id, "name": g.name, "memory_gb": g.memory_gb, "usd_per_hour": g.price} for g in cat.gpus
            if g.price is not None]
    return sorted(rows, key=lambda r: (r["usd_per_hour"], r["gpu_id"]))


# ---------------------------------------------------------------- inventory


@record
class DatacenterInventory:
    datacenter: str
    configured: tuple[tuple[str, str], ...]
    """(gpu id, 'available' | 'low' | 'stock-out' | 'not listed') in gpu_order's order."""
    also_available: tuple[str, ...]

    @property
    def any_available(self) -> bool:
        return any(state in ("available", "low") for _, state in self.configured)


def inventory(cat: Catalog, datacenters: Sequence[str], gpu_order: Sequence[str]) -> list[DatacenterInventory]:
    out = []
    for dc in datacenters:
        configured = tuple((gpu, _state(cat, gpu, dc)) for gpu in gpu_order)
        also = tuple(g.id for g in cat.gpus if g.id not in gpu_order and g.datacenters.get(dc) in AVAILABLE)
        out.append(DatacenterInventory(dc, configured, also))
    return out


def _state(cat: Catalog, gpu_id: str, dc: str) -> str:
    gpu = cat.get(gpu_id)
    if gpu is None:
        return "not listed"
    return gpu.stock(dc)


def inventory_text(report: list[DatacenterInventory], cat: Catalog) -> str:
    lines = []
    for inv in report:
        lines.append(f"{inv.datacenter}:")
        for gpu, state in inv.configured:
            hint = did_you_mean(gpu, cat) if state == "not listed" and cat.get(gpu) is None else ""
            price = cat.get(gpu).price if cat.get(gpu) else None
            lines.append(f"  {gpu:<28} {state}" + (f"  ${price:.2f}/h" if price is not None else "") + hint)
        if inv.also_available:
            lines.append("  also available (not in gpu_order): " + ", ".join(inv.also_available))
    if report and not any(inv.any_available for inv in report):
        widen = sorted({g for inv in report for g in inv.also_available})
        lines.append("stock-out: no GPU of gpu_order is available in any configured datacenter; "
                     + (f"widen pod.gpu_order (e.g. {', '.join(widen[:3])}), " if widen else "")
                     + "add datacenters, try cloud_type COMMUNITY (not with a network volume), or retry later")
    return "\n".join(lines)


def did_you_mean(gpu: str, cat: Catalog) -> str:
    names = [g.id for g in cat.gpus]
    words = set(gpu.lower().split())
    holding = sorted((n for n in names if words <= set(n.lower().split())), key=len)  # "RTX 4090" ⊂ "GeForce RTX 4090"
    close = holding[:1] or close_matches(gpu, names, n=1, cutoff=0.5)
    return f"  (not a RunPod GPU id; did you mean {close[0]!r}?)" if close else "  (not a RunPod GPU id)"


# ---------------------------------------------------------------- estimate


@record
class Estimate:
    gpu_id: str | None
    datacenter_id: str | None
    price_per_hour_usd: float | None
    price_source: str
    timeout_sec: float
    cost_cap_usd: float
    gpu_count: int
    skipped: tuple[str, ...] = ()

    @property
    def spend_at_timeout_usd(self) -> float | None:
        rate = self.hourly_usd
        return None if rate is None else round(rate * self.timeout_sec / 3600.0, 4)

    @property
    def hourly_usd(self) -> float | None:
        return None if self.price_per_hour_usd is None else self.price_per_hour_usd * self.gpu_count

    @property
    def runtime_to_cap_min(self) -> float | None:
        rate = self.hourly_usd
        return None if not rate else self.cost_cap_usd / rate * 60.0


def estimate(cat: Catalog, *, datacenters: Sequence[str], gpu_order: Sequence[str], timeout_sec: float,
             cost_cap_usd: float, assumed_rate: float, gpu_count: int = 1,
             max_gpu_price: float | None = None) -> Estimate:
    """Walk the failover order (datacenter-major) with live stock and prices: where it would land."""
    if not datacenters or not gpu_order:
        raise PodmagicError("an estimate needs pod.datacenters and pod.gpu_order (the RunPod placement)")
    skipped = []
    for dc in datacenters:
        for gpu_id in gpu_order:
            gpu = cat.get(gpu_id)
            if gpu is None:
                skipped.append(f"{gpu_id} not in RunPod's catalogue")
                continue
            if gpu.stock(dc) not in ("available", "low"):
                skipped.append(f"{gpu_id} @ {dc}: {gpu.stock(dc)}")
                continue
            if max_gpu_price is not None and gpu.price is not None and gpu.price > max_gpu_price:
                skipped.append(f"{gpu_id} @ {dc}: ${gpu.price:.2f}/h over --max-gpu-price ${max_gpu_price:.2f}")
                continue
            price, source = (gpu.price, "catalog") if gpu.price is not None else (assumed_rate, "assumed_rate")
            return Estimate(gpu_id, dc, price, source, timeout_sec, cost_cap_usd, gpu_count, tuple(skipped))
    return Estimate(None, None, None, "none", timeout_sec, cost_cap_usd, gpu_count, tuple(skipped))


def estimate_text(est: Estimate) -> str:
    if est.gpu_id is None:
        return "\n".join(["no GPU of gpu_order is available in the configured datacenters:",
                          *[f"  {s}" for s in est.skipped]])
    spend = est.spend_at_timeout_usd
    lines = [f"selected:      {est.gpu_id} @ {est.datacenter_id}",
             f"price:         ${est.price_per_hour_usd:.2f}/h per GPU × {est.gpu_count} ({est.price_source})",
             f"time budget:   {est.timeout_sec / 60:.0f} min",
             f"spend at that: ${spend:.2f}" if spend is not None else "spend at that: -",
             f"cost cap:      ${est.cost_cap_usd:.2f}"
             + (f"  (reached after {est.runtime_to_cap_min:.0f} min)" if est.runtime_to_cap_min else "")]
    if spend is not None and spend > est.cost_cap_usd + 1e-9:
        lines.append(f"warning: the time budget at this price (${spend:.2f}) is over the cost cap")
    lines += [f"skipped:       {s}" for s in est.skipped]
    return "\n".join(lines)


def filter_by_price(cat: Catalog, gpu_order: Sequence[str], max_price: float) -> tuple[str, ...]:
    """runpod-deploy's --max-gpu-price: drop GPUs priced above it; a GPU with no known price stays."""
    kept = tuple(g for g in gpu_order if (cat.get(g) is None or cat.get(g).price is None
                                          or cat.get(g).price <= max_price))
    if not kept:
        priced = ", ".join(f"{g} ${cat.get(g).price:.2f}/h" for g in gpu_order)
        raise PodmagicError(f"--max-gpu-price {max_price}: every GPU of gpu_order costs more ({priced}); "
                            "raise the limit or add cheaper GPUs to pod.gpu_order")
    return kept
