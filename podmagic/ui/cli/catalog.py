"""RunPod's catalogue on the shell: `gpu-list`, `gpu-prices`, `gpu-inventory`, `estimate`
(and `validate --check-availability`). Nothing here creates anything."""

from __future__ import annotations

import json

from podmagic.errors import PodmagicError
from podmagic.run import api
from podmagic.spec.jobspec import JobSpec, parse
from podmagic.ui import catalog, render
from podmagic.ui.cli.common import add_config, config_file


class NoPrices(PodmagicError):
    exit_code = 1


def register(sub) -> None:
    gl = sub.add_parser("gpu-list", help="RunPod GPUs × datacenters: stock and $/h",
                        description="Stock (HIGH → LOW) and $/GPU-hour per GPU and datacenter.")
    gl.add_argument("--datacenter", help="one datacenter (default: all)")
    gl.add_argument("--gpu", help="only GPUs whose id or name contains this")
    gl.add_argument("--cloud-type", choices=("SECURE", "COMMUNITY"), default="SECURE")
    gl.add_argument("--spot", action="store_true", help="accepted for runpod-deploy; on-demand prices are shown")
    gl.add_argument("--no-prices", action="store_true")
    gl.add_argument("--json", action="store_true")
    gl.set_defaults(func=cmd_gpu_list)
    gp = sub.add_parser("gpu-prices", help="RunPod's $/GPU-hour, cheapest first (exit 1: no prices)")
    gp.add_argument("--cloud-type", choices=("SECURE", "COMMUNITY"), default="SECURE")
    gp.add_argument("--spot", action="store_true", help="accepted for runpod-deploy; on-demand prices are shown")
    gp.add_argument("--no-price-cache", action="store_true", help="accepted; podmagic always asks live")
    gp.add_argument("--json", action="store_true")
    gp.set_defaults(func=cmd_gpu_prices)
    gi = sub.add_parser("gpu-inventory", help="stock of a spec's gpu_order per datacenter (exit 3: stock-out)",
                        description="Per datacenter: each configured GPU available / low / stock-out / not "
                                    "listed, and what else is available. Exit 0 if anything is, 3 if nothing.")
    add_config(gi)
    gi.add_argument("--json", action="store_true")
    gi.set_defaults(func=cmd_gpu_inventory)
    es = sub.add_parser("estimate", help="where a spec would land, at what price, and the spend at its budget",
                        description="Walks datacenters × gpu_order with live stock and prices; creates nothing. "
                                    "Exit 1 if no GPU is available.")
    add_config(es)
    es.add_argument("--max-gpu-price", type=float, metavar="USD")
    es.add_argument("--cost-cap-usd", type=float, metavar="F")
    es.add_argument("--max-runtime-minutes", type=int, metavar="N")
    es.add_argument("--json", action="store_true")
    es.set_defaults(func=cmd_estimate)


def _spec(args) -> JobSpec:
    from podmagic.ui.cli.runs import _read

    path = config_file(args)
    return parse(_read(path), source=str(path))


def cmd_gpu_list(args) -> int:
    cat = catalog.fetch(args.cloud_type)
    rows = catalog.table(cat, args.datacenter, prices=not args.no_prices, gpu_filter=args.gpu)
    print(json.dumps(rows, indent=2) if args.json else render.table_text(rows, catalog.table_columns(
        not args.no_prices)))
    return 0


def cmd_gpu_prices(args) -> int:
    rows = catalog.price_rows(catalog.fetch(args.cloud_type))
    if not rows:
        raise NoPrices("RunPod returned no prices (check the API key and the network)")
    print(json.dumps(rows, indent=2) if args.json else render.table_text(
        rows, (("gpu_id", "GPU"), ("memory_gb", "GB"), ("usd_per_hour", "$/h"))))
    return 0


def _report(spec: JobSpec, as_json: bool = False) -> int:
    cat = catalog.fetch(spec.pod.cloud_type, spec.pod.gpu_count)
    report = catalog.inventory(cat, spec.pod.datacenters, spec.pod.gpu_order)
    if as_json:
        print(json.dumps([{"datacenter": r.datacenter, "configured": dict(r.configured),
                           "also_available": list(r.also_available)} for r in report], indent=2))
    else:
        print(catalog.inventory_text(report, cat))
    return 0 if any(r.any_available for r in report) else catalog.EXIT_STOCK_OUT


def cmd_gpu_inventory(args) -> int:
    return _report(_spec(args), args.json)


def availability(spec: JobSpec) -> int:
    """`validate --check-availability`: the inventory; 3 on a full stock-out."""
    return _report(spec)


def cmd_estimate(args) -> int:
    spec = api.apply_overrides(_spec(args), {"cost_cap_usd": args.cost_cap_usd,
                                             "max_runtime_minutes": args.max_runtime_minutes})
    cat = catalog.fetch(spec.pod.cloud_type, spec.pod.gpu_count)
    est = catalog.estimate(cat, datacenters=spec.pod.datacenters, gpu_order=spec.pod.gpu_order,
                           timeout_sec=spec.budget.timeout_sec, cost_cap_usd=spec.budget.cost_cap_usd,
                           assumed_rate=spec.budget.assumed_hourly_rate_usd, gpu_count=spec.pod.gpu_count,
                           max_gpu_price=args.max_gpu_price)
    if args.json:
        print(json.dumps({"gpu_id": est.gpu_id, "datacenter_id": est.datacenter_id,
                          "price_per_hour_usd": est.price_per_hour_usd, "price_source": est.price_source,
                          "gpu_count": est.gpu_count, "timeout_sec": est.timeout_sec,
                          "spend_at_timeout_usd": est.spend_at_timeout_usd, "cost_cap_usd": est.cost_cap_usd,
                          "runtime_to_cap_min": est.runtime_to_cap_min, "skipped": list(est.skipped)}, indent=2))
    else:
        print(catalog.estimate_text(est))
    return 0 if est.gpu_id else 1
