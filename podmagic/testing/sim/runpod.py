"""A RunPod control-plane simulator whose pods are real SSH hosts on loopback.

    sim = RunPodSimulator(tmp_path / "sim", stock={("NVIDIA L40S", "EU-RO-1"): 0})
    sim.start()
    os.environ["RUNPOD_API_BASE_URL"] = sim.base_url   # the runpod SDK reads it per call
    runpod.api_key = sim.api_key
    ...
    sim.pods()                                          # every pod, terminated ones too
    sim.stop()

or from a shell: `python -m podmagic.testing.sim.runpod --port 0 --state-dir DIR`
(prints the base URL on the first line of stdout, serves until interrupted).

It answers the GraphQL that `runpod` SDK 1.12 sends (`gpuTypes`, `pod`,
`myself`, `podFindAndDeployOnDemand`, `podStop`, `podResume`,
`podTerminate`, `updateUserSettings`). A created pod shows `runtime: null`
for `timing.provision_sec`, then a runtime with no ports for
`timing.ports_sec`, then `privatePort 22 → 127.0.0.1:<port>`; its sshd
accepts `timing.ssh_sec` later (a slow SSH start). The account's public key
(`public_key=`, or a generated pair whose private half is `client_key`) is
authorized on every pod; `image_env` is the environment every pod's image
provides (PATH with uv, a Python mirror, ...); `network_volumes` are the
account's volumes (`{id, name, size, dataCenterId}`), shared by every pod
that mounts one (`state_dir/volumes/<id>`). Fault knobs: `set_stock`, `inject` (5xx with a
non-JSON body, GraphQL errors, delays, work-done-but-answer-lost), `set_timing`
and `kill_pod` (the host dies mid-run). State is mirrored to
`state_dir/state.json`. This module never imports `runpod`.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Mapping

from podmagic.testing.sim.catalog import DEFAULT_DATACENTERS, DEFAULT_GPUS, GpuType
from podmagic.testing.sim.control import ControlPlane, Timing
from podmagic.testing.sim.faults import GATEWAY_HTML, Fault, FaultPlan
from podmagic.testing.sim.server import Call, GraphQLServer
from podmagic.testing.sim.state import Store, inspect
from podmagic.testing.sim.stock import Stock
from podmagic.testing.sshd import keygen

__all__ = ["RunPodSimulator", "Timing", "Fault", "GATEWAY_HTML"]


class RunPodSimulator:
    """The control plane, its HTTP endpoint and its pods' hosts."""

    def __init__(self, state_dir: Path | str, *, api_key: str | None = None,
                 stock: Mapping[tuple[str, str], int | None] | None = None,
                 default_stock: int | None = None, gpus: tuple[GpuType, ...] = DEFAULT_GPUS,
                 datacenters: tuple[str, ...] = DEFAULT_DATACENTERS,
                 timing: Timing = Timing(), public_key: str | Path | None = None,
                 host: str = "127.0.0.1", port: int = 0, private_port_entry: bool = False,
                 image_env: Mapping[str, str] | None = None,
                 network_volumes: tuple[dict, ...] = ()):
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.api_key = api_key or f"rpa_SIM{secrets.token_hex(12).upper()}"
        self.client_key = self._account_key(public_key)
        self.store = Store(self.state_dir)
        self.stock = Stock(datacenters, stock, default_stock)
        self.faults = FaultPlan()
        self.plane = ControlPlane(
            self.store, self.state_dir, gpus=tuple(gpus), stock=self.stock, timing=timing,
            public_key_file=self.public_key_file, base_url=lambda: self.base_url,
            private_port_entry=private_port_entry, image_env=dict(image_env or {}),
            network_volumes=tuple(network_volumes))
        self._bind = (host, port)
        self._server: GraphQLServer | None = None

    # -- setup -----------------------------------------------------------
    @property
    def public_key_file(self) -> Path:
        return self.state_dir / "account_key.pub"

    def _account_key(self, public_key: str | Path | None) -> Path | None:
        """Install the account's public key; generate a pair when none given."""
        if public_key is None:
            private = self.state_dir / "account_key"
            if not private.exists():
                keygen(private, "runpod-sim-account")
            return private
        text = Path(public_key).read_text() if _is_path(public_key) else str(public_key)
        self.public_key_file.write_text(text.strip() + "\n")
        return None

    # -- lifecycle -------------------------------------------------------
    def start(self) -> "RunPodSimulator":
        if self._server is None:
            self._server = GraphQLServer(self.plane, self.faults, self.api_key, *self._bind)
            self._server.start()
            self.store.extra = {"base_url": self.base_url}
            self.store.save()
            self._reboot_running()
        return self

    def _reboot_running(self) -> None:
        """Pods left RUNNING by an earlier simulator process boot again."""
        for pod in self.store.all():
            if pod.desired_status == "RUNNING" and pod.id not in self.plane.hosts:
                self.plane.boot(pod)

    def stop(self) -> None:
        """Stop serving and halt every pod host (records stay as they are)."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        for host in list(self.plane.hosts.values()):
            host.halt()
        self.store.save()

    def __enter__(self) -> "RunPodSimulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return self._server.base_url

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}/graphql"

    def client_env(self) -> dict[str, str]:
        """What a client process needs: `RUNPOD_API_BASE_URL` and `RUNPOD_API_KEY`."""
        return {"RUNPOD_API_BASE_URL": self.base_url, "RUNPOD_API_KEY": self.api_key}

    # -- inspection ------------------------------------------------------
    def pods(self, *, include_terminated: bool = True) -> list[dict]:
        """Every pod as a dict (billing as of now), oldest first."""
        return [inspect(p) for p in self.store.all() if include_terminated or p.live]

    def pod(self, pod_id: str) -> dict | None:
        record = self.store.get(pod_id)
        return inspect(record) if record else None

    def live_pods(self) -> list[dict]:
        """Pods that still exist on the account (RUNNING or EXITED)."""
        return self.pods(include_terminated=False)

    def pod_root(self, pod_id: str) -> Path:
        """The directory standing in for the pod's `/` (holds `workspace/`)."""
        return self.state_dir / "pods" / pod_id / "root"

    def pod_env(self, pod_id: str) -> dict[str, str]:
        return self.plane.pod_env(self.store.get(pod_id))

    @property
    def calls(self) -> list[Call]:
        return list(self._server.calls) if self._server else []

    def call_count(self, operation: str) -> int:
        return sum(1 for c in self.calls if c.operation == operation)

    # -- knobs -----------------------------------------------------------
    def set_stock(self, gpu_id: str, datacenter: str, count: int | None,
                  message: str | None = None) -> None:
        """Free GPUs for a combination (`None` unlimited); optional stock-out text."""
        self.stock.set(gpu_id, datacenter, count, message)

    @property
    def timing(self) -> Timing:
        return self.plane.timing

    def set_timing(self, **changes: float) -> None:
        """Change boot timing for pods created or resumed from now on."""
        self.plane.timing = replace(self.plane.timing, **changes)

    def inject(self, operation: str, times: int = 1, *, status: int | None = 502,
               body: str = GATEWAY_HTML, message: str | None = None,
               delay_sec: float = 0.0, apply: bool = False) -> None:
        """Answer the next `times` calls of `operation` (`*`: any) with a fault."""
        self.faults.add(operation, Fault(status, body, message, delay_sec, apply), times)

    def kill_pod(self, pod_id: str, status: str = "EXITED") -> dict:
        """The host dies: sshd and all pod processes are killed; EXITED or TERMINATED."""
        if status not in ("EXITED", "TERMINATED"):
            raise ValueError("status must be EXITED or TERMINATED")
        if self.store.get(pod_id) is None:
            raise KeyError(pod_id)
        reason = "Exited by host" if status == "EXITED" else "Terminated by host"
        return inspect(self.plane.halt(pod_id, status, reason))


def _is_path(value: str | Path) -> bool:
    if isinstance(value, Path):
        return True
    return not value.lstrip().startswith(("ssh-", "ecdsa-", "sk-")) and Path(value).is_file()


def _stock_arg(text: str) -> tuple[tuple[str, str], int | None]:
    combo, _, count = text.rpartition("=")
    gpu, _, dc = combo.rpartition("@")
    if not gpu or not dc:
        raise argparse.ArgumentTypeError("expected 'GPU TYPE@DATACENTER=N'")
    return (gpu, dc), None if count in ("", "inf", "none") else int(count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m podmagic.testing.sim.runpod", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", help="the account key clients must send (default: generated)")
    parser.add_argument("--public-key", help="public key (text or .pub path) authorized on pods")
    parser.add_argument("--stock", action="append", type=_stock_arg, default=[],
                        metavar="GPU@DC=N", help="free GPUs for one combination (repeatable)")
    parser.add_argument("--default-stock", type=int, default=None)
    parser.add_argument("--image-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment every pod's image provides (repeatable), e.g. PATH=...")
    parser.add_argument("--provision-sec", type=float, default=Timing.provision_sec)
    parser.add_argument("--ports-sec", type=float, default=Timing.ports_sec)
    parser.add_argument("--ssh-sec", type=float, default=Timing.ssh_sec)
    args = parser.parse_args(argv)
    timing = Timing(args.provision_sec, args.ports_sec, args.ssh_sec)
    sim = RunPodSimulator(args.state_dir, api_key=args.api_key, stock=dict(args.stock),
                          default_stock=args.default_stock, timing=timing,
                          public_key=args.public_key, port=args.port,
                          image_env=dict(kv.split("=", 1) for kv in args.image_env if "=" in kv)).start()
    print(sim.base_url, flush=True)
    print(f"export RUNPOD_API_BASE_URL={sim.base_url} RUNPOD_API_KEY={sim.api_key}\n"
          f"ssh key authorized on pods: {sim.client_key or sim.public_key_file}", file=sys.stderr, flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
