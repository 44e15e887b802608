"""A RunPod REST v2 simulator whose pods are real SSH hosts on loopback, held to RunPod's API document.

    sim = RunPodSimulator(tmp_path / "sim", stock={("NVIDIA L40S", "EU-RO-1"): 0})
    sim.start()
    os.environ["RUNPOD_API_BASE_URL"] = sim.base_url   # podmagic reads it per call
    os.environ["RUNPOD_API_KEY"] = sim.api_key
    ...
    sim.pods()                                          # every pod, terminated ones too
    sim.contract.violations                             # [] or what broke the document
    sim.stop()

or from a shell: `python -m podmagic.testing.sim.runpod --port 0 --state-dir DIR`
(prints the base URL on the first line of stdout, serves until interrupted).

It answers the operations of `shared/reference/runpod-rest-v2/openapi.json` that podmagic uses
(`/v2/pods`, `/v2/pods/{id}`, `/v2/pods/{id}/action`, `/v2/catalog/gpus`,
`/v2/account/ssh-keys`, `/v2/network-volumes`), and validates every exchange against that
document (`contract.py`). A created pod is PROVISIONING for `timing.provision_sec`, STARTING for
`timing.starting_sec`, RUNNING without its 22/tcp mapping for `timing.ports_sec`, then
`ssh.direct` → 127.0.0.1:<port>; its sshd accepts `timing.ssh_sec` later. How the pod boots
(environment, keys, uv) is RunPod's (`podhost.py`); which images exist and carry uv is
`images.py`. The account's registered keys are `public_key=` (or a generated pair whose private
half is `client_key`; `register_key=False` registers none). `network_volumes` are the account's
volumes, shared by every pod that mounts one (`state_dir/volumes/<id>`). Knobs: `set_stock`,
`inject` (5xx, 429 with Retry-After, dropped connections, work-done-but-answer-lost, delays),
`rate_limit`, `listing_lag_sec`, `community_public_ip`, `set_timing`, `kill_pod`. State is
mirrored to `state_dir/state.json` (every pod's status and ports).
"""

from __future__ import annotations

import getopt
import os
import secrets
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Mapping

from podmagic.testing.sim.catalog import DEFAULT_DATACENTERS, DEFAULT_GPUS, GpuType
from podmagic.testing.sim.contract import Contract
from podmagic.testing.sim.control import ControlPlane, Timing
from podmagic.testing.sim.faults import GATEWAY_HTML, Fault, FaultPlan
from podmagic.testing.sim.images import UV_MODES
from podmagic.testing.sim.server import Call, RestServer
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
                 host: str = "127.0.0.1", port: int = 0,
                 image_env: Mapping[str, str] | None = None, register_key: bool = True,
                 network_volumes: tuple[dict, ...] = (), images: Mapping[str, str] | None = None,
                 contract: Contract | None = None, **_ignored: object):
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.api_key = api_key or f"rpa_SIM{secrets.token_hex(12).upper()}"
        self.client_key = self._account_key(public_key)
        self.account_keys = [self.public_key_file.read_text().strip()] if register_key else []
        self.store = Store(self.state_dir)
        self.stock = Stock(datacenters, stock, default_stock)
        self.faults = FaultPlan()
        self.contract = contract or Contract()
        self.plane = ControlPlane(
            self.store, self.state_dir, gpus=tuple(gpus), stock=self.stock, timing=timing,
            account_keys=self.account_keys, base_url=lambda: self.base_url,
            image_env=dict(image_env or {}), network_volumes=tuple(network_volumes), images=dict(images or {}))
        self._bind = (host, port)
        self._server: RestServer | None = None

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
            self._server = RestServer(self.plane, self.faults, self.api_key, self.contract, *self._bind)
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
        tally = os.environ.get("PODMAGIC_SIM_CONTRACT_TALLY")
        if tally:
            with open(tally, "a") as out:
                out.write(f"{self.contract.checked} {len(self.contract.violations)}\n")

    def __enter__(self) -> "RunPodSimulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return self._server.base_url

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
        """The container's environment (SSH sessions do not get it; /etc/rp_environment has PATH and RUNPOD_*)."""
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
               body: str | None = None, message: str | None = None, delay_sec: float = 0.0,
               apply: bool = False, drop: bool = False, retry_after: int = 1) -> None:
        """Answer the next `times` calls of `operation` (an operationId, `podAction:stop`, `*`) with a fault."""
        self.faults.add(operation, Fault(status, body, message, delay_sec, apply, retry_after, drop), times)

    def rate_limit(self, limit: int | None, window_sec: float = 60.0) -> None:
        """At most `limit` requests per `window_sec`; beyond that, 429 with Retry-After (None: off)."""
        self._server.limiter.set(limit, window_sec)

    @property
    def listing_lag_sec(self) -> float:
        return self.plane.listing_lag_sec

    @listing_lag_sec.setter
    def listing_lag_sec(self, value: float) -> None:
        """A new pod appears in `GET /v2/pods` only this long after its create."""
        self.plane.listing_lag_sec = value

    @property
    def community_public_ip(self) -> bool:
        return self.plane.community_public_ip

    @community_public_ip.setter
    def community_public_ip(self, value: bool) -> None:
        """False: COMMUNITY pods created from now on get no public IP (proxy only)."""
        self.plane.community_public_ip = value

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
        raise ValueError("expected 'GPU TYPE@DATACENTER=N'")
    return (gpu, dc), None if count in ("", "inf", "none") else int(count)


def _opt(cast, default=None, *, many=False, text=""):
    return {"cast": cast, "default": [] if many else default, "many": many, "help": text}


# The simulator's flags: (type, default, repeatable, help). Read with the standard library's getopt,
# so this test double carries no front-end machinery (argparse belongs to podmagic.ui).
OPTIONS = {
    "state-dir": _opt(Path, text="folder for state.json and the pods' roots (required)"),
    "port": _opt(int, 0, text="127.0.0.1 port (0: any free one)"),
    "api-key": _opt(str, text="the account key clients must send (default: generated)"),
    "public-key": _opt(str, text="public key (text or .pub path) registered on the account"),
    "stock": _opt(_stock_arg, many=True, text="GPU@DC=N: free GPUs for one combination (repeatable)"),
    "default-stock": _opt(int, text="free GPUs for every other combination"),
    "image-env": _opt(str, many=True, text="NAME=VALUE: environment every pod's image provides (repeatable)"),
    "provision-sec": _opt(float, Timing.provision_sec),
    "ports-sec": _opt(float, Timing.ports_sec),
    "ssh-sec": _opt(float, Timing.ssh_sec),
    "starting-sec": _opt(float, Timing.starting_sec),
    "image": _opt(str, many=True, text=f"TAG=UV: an extra image that exists; UV one of {', '.join(UV_MODES)}"),
    "no-account-key": _opt(bool, False, text="register no SSH key on the account (pods then need PUBLIC_KEY)"),
    "listing-lag-sec": _opt(float, 0.0),
    "rate-limit": _opt(str, text="N/SEC: at most N requests per SEC seconds (429 beyond)"),
    "community-no-public-ip": _opt(bool, False, text="COMMUNITY pods get no public IP (only the SSH proxy)"),
}


def _usage() -> str:
    lines = ["usage: python -m podmagic.testing.sim.runpod --state-dir DIR [options]", __doc__.split("\n")[0], ""]
    lines += [f"  --{name:<24} {o['help']}" for name, o in OPTIONS.items()]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> SimpleNamespace:
    """The flags as attributes (dashes become underscores); SystemExit(2) with the usage on a mistake."""
    specs = [name if OPTIONS[name]["cast"] is bool else name + "=" for name in OPTIONS] + ["help"]
    try:
        pairs, rest = getopt.gnu_getopt(argv, "", specs)
        if rest:
            raise getopt.GetoptError(f"unexpected argument {rest[0]!r}")
        values = {name: (list(o["default"]) if o["many"] else o["default"]) for name, o in OPTIONS.items()}
        for flag, text in pairs:
            name = flag[2:]
            if name == "help":
                print(_usage())
                raise SystemExit(0)
            o = OPTIONS[name]
            value = True if o["cast"] is bool else o["cast"](text)
            values[name] = values[name] + [value] if o["many"] else value
        if values["state-dir"] is None:
            raise getopt.GetoptError("--state-dir is required")
    except (getopt.GetoptError, ValueError) as exc:
        print(f"{_usage()}\nerror: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return SimpleNamespace(**{k.replace("-", "_"): v for k, v in values.items()})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    timing = Timing(args.provision_sec, args.ports_sec, args.ssh_sec, args.starting_sec)
    sim = RunPodSimulator(args.state_dir, api_key=args.api_key, stock=dict(args.stock),
                          default_stock=args.default_stock, timing=timing,
                          public_key=args.public_key, port=args.port, register_key=not args.no_account_key,
                          images=dict(kv.split("=", 1) for kv in args.image if "=" in kv),
                          image_env=dict(kv.split("=", 1) for kv in args.image_env if "=" in kv)).start()
    sim.listing_lag_sec = args.listing_lag_sec
    sim.community_public_ip = not args.community_no_public_ip
    if args.rate_limit:
        limit, _, window = args.rate_limit.partition("/")
        sim.rate_limit(int(limit), float(window or 60))
    print(sim.base_url, flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(f"export RUNPOD_API_BASE_URL={sim.base_url} RUNPOD_API_KEY={sim.api_key}\n"
          f"ssh key registered on the account: {sim.client_key or sim.public_key_file}", file=sys.stderr, flush=True)
    done.wait()
    if sim.contract.violations:
        print("contract violations:\n" + "\n".join(sim.contract.violations), file=sys.stderr, flush=True)
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
