"""The RunPod backend end to end: the REST v2 client, the simulator (held to openapi.json), real sshd pods."""

from __future__ import annotations

import time

import pytest

from podmagic.backends.base import BackendError, CapacityError, Launch, PodRequest
from podmagic.testing.sim.catalog import NO_RESOURCES
from podmagic.testing.sim.runpod import RunPodSimulator, Timing
from podmagic.backends.runpod.backend import RunPodBackend
from podmagic.backends.runpod.wait import PodGone, SSHNotReady

from runpod_helpers import finish_sim, sim  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e  # real backends end to end: not in the fast lane (-m "not e2e")

H100, A100, L40S = "NVIDIA H100 80GB HBM3", "NVIDIA A100 80GB PCIe", "NVIDIA L40S"
EU, US = "EU-RO-1", "US-MD-1"
IMAGE = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"


class Events(list):
    def __call__(self, kind, **data):
        self.append((kind, data))

    def kinds(self):
        return [k for k, _ in self]

    def of(self, kind):
        return [d for k, d in self if k == kind]


def request(sim, tmp_path, run_id="job-20261126T120000Z-ab12", **kw) -> PodRequest:
    kw.setdefault("datacenters", (EU, US))
    kw.setdefault("gpu_order", (H100, A100))
    kw.setdefault("ssh_ready_timeout_sec", 10)
    kw.setdefault("volume_gb", 5)
    return PodRequest(run_id=run_id, image=kw.pop("image", IMAGE), key_path=str(sim.client_key),
                      run_dir=tmp_path / "artifacts" / "runpod" / run_id, **kw)


def backend(**kw) -> RunPodBackend:
    kw.setdefault("lost_create_sec", 1.0)
    return RunPodBackend(poll=(0.05, 0.2), retry_delays=(0.05,) * 4, **kw)


def test_provision_run_and_delete(sim, tmp_path):
    events, req = Events(), request(sim, tmp_path)
    pod = backend().provision(req, events)
    assert (pod.info.gpu_id, pod.info.datacenter_id) == (H100, EU)
    from podmagic.backends.runpod import catalog
    assert pod.info.price_per_hour_usd == catalog([H100])[0].usd_per_hour("SECURE") == 2.99
    assert [h["state"] for h in events.of("pod_handle")] == ["provisioning", "starting"]
    assert {h["pod_id"] for h in events.of("pod_handle")} == {pod.info.pod_id}
    assert pod.run("echo hi", timeout=10).output == "hi\n"
    described = pod.describe()
    assert described["id"] == pod.info.pod_id and described["status"] == "RUNNING" and "env" not in described
    assert pod.live_gpus() == [{"util": 0, "memoryUtil": 0}]
    pod.write_file("/workspace/repo/x.txt", b"data")
    assert (sim.pod_root(pod.info.pod_id) / "workspace/repo/x.txt").read_bytes() == b"data"
    assert events.of("gpu_selected") == [{"gpu_id": H100, "datacenter_id": EU, "attempts": 1}]
    assert pod.release("delete") == "TERMINATED"
    assert sim.live_pods() == []


def test_failover_is_datacenter_major_and_capacity_only(sim, tmp_path):
    sim.set_stock(H100, EU, 0)
    sim.set_stock(A100, EU, 0)
    sim.set_stock(H100, US, 0, message=NO_RESOURCES)
    events = Events()
    pod = backend().provision(request(sim, tmp_path), events)
    assert (pod.info.gpu_id, pod.info.datacenter_id) == (A100, US)
    rows = [(d["datacenter_id"], d["gpu_id"], d["outcome"]) for d in events.of("placement_attempt")
            if d["outcome"] != "trying"]
    assert rows == [(EU, H100, "no_capacity"), (EU, A100, "no_capacity"),
                    (US, H100, "no_capacity"), (US, A100, "created")]
    assert events.of("datacenter_failover")[0]["from"] == EU
    assert events.of("datacenter_failover")[0]["to"] == US
    pod.release("delete")

    sim.set_stock(A100, US, 0)
    with pytest.raises(CapacityError) as info:
        backend().provision(request(sim, tmp_path, run_id="job-20261126T120001Z-ab13"), Events())
    assert f"{US} × {A100}" in str(info.value) and "does not have the resources" in str(info.value)
    assert sim.live_pods() == []


def test_other_create_errors_are_fatal(sim, tmp_path):
    sim.inject("createPod", status=402, message="insufficient balance")
    with pytest.raises(BackendError, match="HTTP 402.*insufficient balance"):
        backend().provision(request(sim, tmp_path), Events())
    assert sim.call_count("createPod") == 1 and sim.live_pods() == []


def test_ssh_never_ready_terminates_the_pod(sim, tmp_path):
    sim.set_timing(provision_sec=float("inf"))
    req, events = request(sim, tmp_path, ssh_ready_timeout_sec=1), Events()
    started = time.monotonic()
    with pytest.raises(SSHNotReady, match="within 1s"):
        backend().provision(req, events)
    assert time.monotonic() - started < 5
    pod_id = events.of("pod_handle")[0]["pod_id"]  # reported before the wait began
    assert sim.pod(pod_id)["desired_status"] == "TERMINATED"
    assert events.of("pod_terminated")[0]["pod_id"] == pod_id


def test_slow_sshd_is_probed_with_backoff(sim, tmp_path):
    sim.set_timing(ssh_sec=1.0)
    events = Events()
    pod = backend().provision(request(sim, tmp_path), events)
    assert pod.run("echo up", timeout=10).output == "up\n"
    assert "ssh_retry" in events.kinds()  # the first connection is retried; no link was lost yet
    pod.release("delete")


def test_5xx_during_create_and_terminate_leaks_nothing(sim, tmp_path):
    sim.inject("createPod", status=502)
    sim.inject("createPod", status=504, apply=True)
    events = Events()
    pod = backend().provision(request(sim, tmp_path), events)
    assert [p["id"] for p in sim.live_pods()] == [pod.info.pod_id]   # adopted, not duplicated
    assert sim.call_count("createPod") == 2 and events.of("api_retry")
    sim.inject("podAction:terminate", times=2, status=500)
    sim.inject("podAction:terminate", status=502, apply=True)
    assert pod.release("delete") == "TERMINATED"
    assert sim.live_pods() == []


def test_pod_killed_mid_run_is_noticed_quickly(sim, tmp_path):
    events = Events()
    pod = backend().provision(request(sim, tmp_path), events)
    pod.write_file("/workspace/log", b"line\n")
    sim.kill_pod(pod.info.pod_id, status="EXITED")
    started = time.monotonic()
    with pytest.raises(PodGone):
        pod.read_from("/workspace/log", 0)
    assert time.monotonic() - started < 5
    assert events.of("pod_killed_unexpected")[0]["status"] == "EXITED"
    assert pod.release("delete") == "TERMINATED"       # a dead EXITED pod still bills disk
    assert sim.live_pods() == []


def test_stop_and_preserve(sim, tmp_path):
    events = Events()
    pod = backend().provision(request(sim, tmp_path), events)
    assert pod.release("stop") == "EXITED"
    nudge = events.of("warning")[-1]["message"]
    assert "5 GB" in nudge and "/day" in nudge and "podmagic cleanup job-20261126T120000Z-ab12" in nudge
    assert sim.pod(pod.info.pod_id)["billing"] == "disk"

    pod = backend().provision(request(sim, tmp_path, run_id="job-20261126T120002Z-ab14"), events)
    assert pod.release("preserve") == "RUNNING"
    assert sim.pod(pod.info.pod_id)["desired_status"] == "RUNNING"


def test_recycle_resumes_then_drift_replaces(sim, tmp_path):
    opts = {"on_success": "recycle"}
    first = backend().provision(request(sim, tmp_path, options=opts), Events())
    first.write_file("/workspace/keep.txt", b"kept")
    assert first.release("recycle") == "EXITED"

    events = Events()
    second = backend().provision(request(sim, tmp_path, "job-20261126T120003Z-ab15", options=opts), events)
    assert second.info.pod_id == first.info.pod_id and second.info.resumed
    assert second.read_from("/workspace/keep.txt", 0) == b"kept"
    assert "pod_resumed" in events.kinds()
    assert second.release("recycle") == "EXITED"

    events = Events()
    third = backend().provision(request(sim, tmp_path, "job-20261126T120004Z-ab16", options=opts,
                                        image="runpod/pytorch:2.3.1-py3.11-cuda12.1.1-devel-ubuntu22.04"), events)
    assert third.info.pod_id != first.info.pod_id and not third.info.resumed
    assert events.of("recycle_drift")
    assert sim.pod(first.info.pod_id)["desired_status"] == "TERMINATED"
    third.release("recycle")

    fresh = backend(force_fresh=True).provision(
        request(sim, tmp_path, "job-20261126T120005Z-ab17", options=opts, image="runpod/pytorch:2.3.1-py3.11-cuda12.1.1-devel-ubuntu22.04"), Events())
    assert fresh.info.pod_id != third.info.pod_id
    assert sim.pod(third.info.pod_id)["desired_status"] == "TERMINATED"
    fresh.release("delete")
    assert sim.live_pods() == []
    assert not list((tmp_path / "artifacts" / "runpod" / ".recycle").glob("*.json"))


def test_watchdog_terminates_the_pod_itself(sim, tmp_path):
    pod = backend().provision(request(sim, tmp_path), Events())
    launch = Launch(script_path="/workspace/.podmagic/run.sh", log_path="/workspace/.podmagic/run.log",
                    exit_path="/workspace/.podmagic/exit", workdir="/workspace", body="sleep 60\n",
                    max_runtime_sec=1, watchdog_interval_sec=0.2)
    pod.start(launch)
    deadline = time.monotonic() + 15
    by_pod = lambda: [(c.operation, c.status) for c in sim.calls if c.by_pod == pod.info.pod_id]  # noqa: E731
    while sim.pod(pod.info.pod_id)["desired_status"] != "TERMINATED" or len(by_pod()) < 2:
        assert time.monotonic() < deadline, sim.pod(pod.info.pod_id)
        time.sleep(0.1)
    # the guard's one check with the pod's own key, then the launcher watchdog's terminate
    assert by_pod() == [("getPod", 200), ("podAction:terminate", 204)]
    assert pod.release("stop") == "TERMINATED"


def test_interrupt_while_waiting_terminates(sim, tmp_path):
    sim.set_timing(provision_sec=float("inf"))
    events = Events()

    def interrupt_while_provisioning(kind, **data):
        events(kind, **data)
        if kind == "pod_status":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        backend().provision(request(sim, tmp_path), interrupt_while_provisioning)
    assert sim.live_pods() == []
    assert "interrupted" in events.of("pod_terminated")[0]["reason"]


def test_api_key_missing_is_a_clear_error(sim, tmp_path, monkeypatch):
    monkeypatch.delenv("RUNPOD_API_KEY")
    with pytest.raises(BackendError, match="no RunPod API key"):
        backend().provision(request(sim, tmp_path), Events())
    monkeypatch.setenv("RUNPOD_API_KEY", "wrong")
    with pytest.raises(BackendError, match="rejected the API key"):
        backend().provision(request(sim, tmp_path), Events())


def test_stale_pods_and_cleanup(sim, tmp_path):
    from podmagic.backends.runpod.api import RunPodAPI
    from podmagic.backends.runpod.audit import cleanup_stopped, stale_pods

    stopped = backend().provision(request(sim, tmp_path, volume_gb=30), Events())
    stopped.release("stop")
    running = backend().provision(request(sim, tmp_path, "job-20261126T120006Z-ab18"), Events())
    other = backend().provision(request(sim, tmp_path, "job-20261126T120007Z-ab19"), Events())
    other.release("stop")

    api = RunPodAPI(retry_delays=(0.05,))
    stale = stale_pods(api, {stopped.info.pod_id: stopped.request.run_dir})
    assert [p.pod_id for p in stale] == [stopped.info.pod_id, other.info.pod_id]
    assert stale[0].usd_per_day == 0.2 and stale[0].run_dir == stopped.request.run_dir
    assert stale[1].run_dir is None

    api.terminate(stopped.info.pod_id)
    assert cleanup_stopped(api) == [other.info.pod_id]
    assert [p["id"] for p in sim.live_pods()] == [running.info.pod_id]
    running.release("delete")


def test_network_volume_pins_the_datacenter_and_persists(tmp_path, monkeypatch):
    volumes = ({"id": "vol1abc", "name": "data", "size": 50, "dataCenterId": US},)
    sim = RunPodSimulator(tmp_path / "sim", timing=Timing(0.2, 0.1, 0.0), network_volumes=volumes).start()
    monkeypatch.setenv("RUNPOD_API_BASE_URL", sim.base_url)
    monkeypatch.setenv("RUNPOD_API_KEY", sim.api_key)
    try:
        events = Events()
        first = backend().provision(request(sim, tmp_path, storage_mode="network_volume", volume_name="data"),
                                    events)
        assert first.info.datacenter_id == US and events.of("network_volume_resolved")[0]["volume_id"] == "vol1abc"
        first.write_file("/workspace/dataset.bin", b"shared")
        first.release("delete")
        second = backend().provision(request(sim, tmp_path, "job-20261126T120008Z-ab20",
                                             storage_mode="network_volume", volume_name="data"), Events())
        assert second.read_from("/workspace/dataset.bin", 0) == b"shared"
        second.release("delete")
        with pytest.raises(BackendError, match="lives in US-MD-1"):
            backend().provision(request(sim, tmp_path, datacenters=(EU,), storage_mode="network_volume",
                                        volume_name="data"), Events())
        with pytest.raises(BackendError, match="not found"):
            backend().provision(request(sim, tmp_path, storage_mode="network_volume", volume_name="nope"),
                                Events())
        assert sim.live_pods() == []
    finally:
        finish_sim(sim)
