"""The GPU catalogue verbs: inventory, estimate, price filter (on REST v2 `GpuType` data held to
RunPod's OpenAPI document) and `gpu-list` / `gpu-prices` / `gpu-inventory` / `estimate` /
`run --max-gpu-price` / `validate --check-availability` against the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from podmagic.errors import PodmagicError
from podmagic.testing.sim.runpod import RunPodSimulator
from podmagic.ui import catalog
from test_cli_mistakes import cli

pytestmark = pytest.mark.e2e  # real runs, CLI subprocesses or kernels: not in the fast lane (-m "not e2e")

OPENAPI = Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "runpod-rest-v2" / "openapi.json"
OPENAPI = OPENAPI if OPENAPI.exists() else Path("/work/shared/reference/runpod-rest-v2/openapi.json")

L40S, A6000, H100, A4090 = "NVIDIA L40S", "NVIDIA RTX A6000", "NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090"


def gpu_type(gpu_id, name, memory, secure, community, stock: dict[str, str]):
    item = {"id": gpu_id, "name": name, "pool": None, "manufacturer": "NVIDIA", "memory": memory, "secure": True,
            "community": True, "price": {"secure": secure, "community": community},
            "maxCount": {"secure": 8, "community": 4},
            "availability": max(stock.values(), key=["NONE", "LOW", "MEDIUM", "HIGH"].index) if stock else "NONE"}
    if stock:
        item["dataCenters"] = [{"id": dc, "name": dc, "availability": level} for dc, level in stock.items()]
    return item


ANSWER = {"gpus": [
    gpu_type(L40S, "L40S", 48, 0.86, 0.79, {"EU-RO-1": "LOW", "US-MD-1": "NONE"}),
    gpu_type(A6000, "RTX A6000", 48, 0.49, 0.33, {"US-MD-1": "HIGH"}),
    gpu_type(H100, "H100 SXM", 80, 2.99, 2.69, {"EU-RO-1": "HIGH", "US-MD-1": "MEDIUM"}),
    gpu_type(A4090, "RTX 4090", 24, 0.69, 0.34, {}),
]}


def test_the_fixture_is_what_runpod_documents():
    doc = json.loads(OPENAPI.read_text())
    schema = {"$ref": "#/components/schemas/ListGpuTypesResponse", "components": doc["components"]}
    jsonschema.Draft202012Validator(schema).validate(ANSWER)


def cat(cloud="SECURE"):
    return catalog.from_gpu_types(ANSWER["gpus"], cloud)


def test_inventory_states_also_available_and_did_you_mean():
    c = cat()
    report = catalog.inventory(c, ("EU-RO-1", "US-MD-1"), (L40S, "NVIDIA RTX 4090", A4090))
    assert dict(report[0].configured) == {L40S: "low", "NVIDIA RTX 4090": "not listed", A4090: "not listed"}
    assert dict(report[1].configured)[L40S] == "stock-out"
    assert report[0].also_available == (H100,) and set(report[1].also_available) == {A6000, H100}
    text = catalog.inventory_text(report, c)
    assert "did you mean 'NVIDIA GeForce RTX 4090'?" in text
    assert "also available (not in gpu_order): " + H100 in text
    assert report[0].any_available and "stock-out:" not in text


def test_full_stock_out_gives_the_widening_hint():
    c = cat()
    report = catalog.inventory(c, ("US-MD-1",), (L40S, A4090))
    assert not any(r.any_available for r in report)
    text = catalog.inventory_text(report, c)
    assert "stock-out: no GPU of gpu_order is available" in text and "widen pod.gpu_order (e.g." in text


def test_estimate_walks_datacenter_major_with_prices_and_budget():
    c = cat()
    est = catalog.estimate(c, datacenters=("US-MD-1", "EU-RO-1"), gpu_order=(L40S, A6000), timeout_sec=3600,
                           cost_cap_usd=10, assumed_rate=1.65, gpu_count=2)
    assert (est.gpu_id, est.datacenter_id, est.price_per_hour_usd) == (A6000, "US-MD-1", 0.49)
    assert est.skipped == (f"{L40S} @ US-MD-1: stock-out",)
    assert est.spend_at_timeout_usd == pytest.approx(0.98) and est.runtime_to_cap_min == pytest.approx(10 / 0.98 * 60)
    capped = catalog.estimate(c, datacenters=("US-MD-1", "EU-RO-1"), gpu_order=(H100, L40S),
                              timeout_sec=3600, cost_cap_usd=10, assumed_rate=1.65, max_gpu_price=1.0)
    assert (capped.gpu_id, capped.datacenter_id) == (L40S, "EU-RO-1")  # H100 in stock but over the price
    assert any("over --max-gpu-price $1.00" in s for s in capped.skipped)
    none = catalog.estimate(c, datacenters=("US-MD-1",), gpu_order=(L40S,), timeout_sec=60, cost_cap_usd=1,
                            assumed_rate=1)
    assert none.gpu_id is None and "no GPU of gpu_order is available" in catalog.estimate_text(none)
    community = catalog.from_gpu_types(ANSWER["gpus"], "COMMUNITY")
    assert community.get(L40S).price == 0.79


def test_max_gpu_price_keeps_unpriced_and_refuses_when_nothing_is_left():
    c = cat()
    assert catalog.filter_by_price(c, (H100, L40S, "unknown gpu"), 1.0) == (L40S, "unknown gpu")
    with pytest.raises(PodmagicError, match="every GPU of gpu_order costs more"):
        catalog.filter_by_price(c, (H100,), 1.0)


def test_gpu_table_sorted_by_stock_then_price_and_filtered():
    rows = catalog.table(cat())
    assert [(r["gpu_id"], r["datacenter"]) for r in rows[:2]] == [(A6000, "US-MD-1"), (H100, "EU-RO-1")]
    assert {r["stock"] for r in rows[-1:]} == {"NONE"}
    assert {r["gpu_id"] for r in catalog.table(cat(), gpu_filter="h100")} == {H100}
    assert {r["datacenter"] for r in catalog.table(cat(), "EU-RO-1")} == {"EU-RO-1"}


# ---------------------------------------------------------------- against the simulator


@pytest.fixture
def sim_env(tmp_path):
    sim = RunPodSimulator(tmp_path / "sim", stock={(L40S, "EU-RO-1"): 0, (A4090, "EU-RO-1"): 0},
                          default_stock=None).start()
    yield sim, {"RUNPOD_API_BASE_URL": sim.base_url, "RUNPOD_API_KEY": sim.api_key}
    sim.stop()


SPEC = ("pod:\n  image: runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04\n  datacenters: [EU-RO-1]\n"
        "  gpu_order: [\"NVIDIA L40S\", \"NVIDIA GeForce RTX 4090\"]\nstaging: []\nrun: echo hi\n")


def test_prices_list_and_estimate_against_the_simulator(sim_env, project):
    sim, env = sim_env
    prices = cli("gpu-prices", "--json", cwd=project, env=env)
    assert prices.returncode == 0, prices.stderr
    rows = json.loads(prices.stdout)
    assert rows[0]["usd_per_hour"] <= rows[-1]["usd_per_hour"]
    assert {r["gpu_id"]: r["usd_per_hour"] for r in rows}[L40S] == 0.86
    community = json.loads(cli("gpu-prices", "--json", "--cloud-type", "COMMUNITY", cwd=project, env=env).stdout)
    assert {r["gpu_id"]: r["usd_per_hour"] for r in community}[L40S] == 0.79
    listing = cli("gpu-list", "--gpu", "L40S", cwd=project, env=env)
    assert listing.returncode == 0 and L40S in listing.stdout and A6000 not in listing.stdout
    (project / "job.yaml").write_text(SPEC)
    dry = cli("run", "job.yaml", "--backend", "runpod", "--max-gpu-price", "0.7", "--dry-run", cwd=project, env=env)
    assert dry.returncode == 0, dry.stderr
    assert f"skipping {L40S} ($0.86/h)" in dry.stderr and f"gpu_order=['{A4090}']" in dry.stdout
    assert not sim.pods()  # nothing created
    over = cli("run", "job.yaml", "--backend", "runpod", "--max-gpu-price", "0.1", cwd=project, env=env)
    assert over.returncode == 2 and "every GPU of gpu_order costs more" in over.stderr
    assert not (project / "artifacts").exists() and not sim.pods()


def test_inventory_estimate_and_check_availability_see_the_stock(sim_env, project):
    sim, env = sim_env
    (project / "job.yaml").write_text(SPEC)
    inv = cli("gpu-inventory", "job.yaml", cwd=project, env=env)
    assert inv.returncode == 3, inv.stdout + inv.stderr
    assert "stock-out: no GPU of gpu_order is available" in inv.stdout and "also available" in inv.stdout
    check = cli("validate", "job.yaml", "--backend", "runpod", "--check-availability", cwd=project, env=env)
    assert check.returncode == 3 and "ok:" not in check.stdout
    est = cli("estimate", "job.yaml", cwd=project, env=env)
    assert est.returncode == 1 and "no GPU of gpu_order is available" in est.stdout
    sim.stock.set(A4090, "EU-RO-1", None)
    inv = cli("gpu-inventory", "--config", "job.yaml", "--json", cwd=project, env=env)
    assert inv.returncode == 0 and json.loads(inv.stdout)[0]["configured"][A4090] in ("available", "low")
    est = cli("estimate", "job.yaml", "--json", cwd=project, env=env)
    assert est.returncode == 0 and json.loads(est.stdout)["gpu_id"] == A4090
    assert json.loads(est.stdout)["price_per_hour_usd"] == 0.69
    assert not sim.pods()
