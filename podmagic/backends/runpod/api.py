"""A careful client of RunPod's control plane, on top of the `runpod` SDK.

The SDK (`>=1.12,<1.13`) is imported on first use (it costs over a second).
It reads `RUNPOD_API_BASE_URL` on every call, does not read `RUNPOD_API_KEY`
itself, sends one request with no retries, and lets a non-JSON 5xx escape as
a `requests` JSON error. This module adds what a launcher needs:

- the API key from `api_key=`, else `RUNPOD_API_KEY`, else the SDK's config
  file (`~/.runpod/config.toml`, already loaded into `runpod.api_key`);
- a classification of every failure: capacity (RunPod's stock-out texts:
  move on to the next GPU/datacenter), transient (network, 5xx, gateway
  pages: retry with backoff), or fatal (the API's message, as is);
- retries for calls that can be repeated (get, list, stop, resume,
  terminate) and, for create, which cannot, a look-up of the pod by its
  unique name after a transient failure, so a create whose answer was lost
  adopts the pod instead of leaking it or creating a second one.

No user text is ever put into the SDK's GraphQL strings: names are run ids
and images come from the validated spec; scripts, pins and secrets go over
SSH.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

from podmagic.backends.base import BackendError

CAPACITY_PATTERNS = (
    "no longer any instances available",
    "does not have the resources",
    "not enough free gpus",
    "no instances available",
    "could not find any pods with required specifications",
)
NOT_FOUND_PATTERNS = ("not found", "does not exist", "no pod found")
TRANSIENT_PATTERNS = ("try again later", "internal server error", "timed out", "bad gateway",
                      "service unavailable")
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
SAFE = {
    "image": re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,255}$"),
    "gpu": re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._()/+-]{0,100}$"),
    "datacenter": re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,60}$"),
    "name": re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$"),
    "path": re.compile(r"^/[A-Za-z0-9._/-]{0,200}$"),
    "ports": re.compile(r"^\d{1,5}/(tcp|http|udp)(,\d{1,5}/(tcp|http|udp))*$"),
    "cloud_type": re.compile(r"^(ALL|SECURE|COMMUNITY)$"),
}


class ApiError(BackendError):
    """A failed control-plane call; `kind` is what `classify` said."""

    def __init__(self, message: str, kind: str = "fatal"):
        super().__init__(message)
        self.kind = kind


class CapacityExhausted(ApiError):
    """RunPod has no capacity for one GPU × datacenter (its message kept)."""

    def __init__(self, message: str):
        super().__init__(message, "capacity")


class TransientError(ApiError):
    """The API kept failing in ways that may pass (network, 5xx)."""

    def __init__(self, message: str):
        super().__init__(message, "transient")


AUTH_MESSAGE = "RunPod rejected the API key (HTTP 401): check RUNPOD_API_KEY or ~/.runpod/config.toml"


def load_sdk():
    try:
        import runpod
    except ImportError as exc:
        raise BackendError("the runpod backend needs the runpod SDK: pip install 'podmagic[runpod]' "
                           "(runpod>=1.12,<1.13)") from exc
    return runpod


def resolve_api_key(explicit: str | None, sdk) -> str:
    key = explicit or os.environ.get("RUNPOD_API_KEY") or getattr(sdk, "api_key", None)
    if not key:
        raise BackendError("no RunPod API key: export RUNPOD_API_KEY=... or run `runpod config` "
                           "(writes ~/.runpod/config.toml)")
    return key


def classify(exc: BaseException) -> str:
    """'capacity', 'not_found', 'transient', 'auth' or 'fatal'."""
    name = type(exc).__name__
    if name == "AuthenticationError":
        return "auth"
    text = str(exc).lower()
    if name == "QueryError":
        if any(p in text for p in CAPACITY_PATTERNS):
            return "capacity"
        if any(p in text for p in NOT_FOUND_PATTERNS):
            return "not_found"
        return "transient" if any(p in text for p in TRANSIENT_PATTERNS) else "fatal"
    try:
        import requests
    except ImportError:  # pragma: no cover - requests comes with the SDK
        return "fatal"
    return "transient" if isinstance(exc, (requests.RequestException, ConnectionError)) else "fatal"


def describe(exc: BaseException) -> str:
    """A one-line reason for a failed call, without response bodies."""
    if type(exc).__name__ == "JSONDecodeError":
        return "the API answered with a non-JSON body (HTTP 5xx / gateway error)"
    text = re.sub(r"\s+", " ", str(exc)).strip()
    return f"{type(exc).__name__}: {text[:300]}"


@dataclass(frozen=True)
class CreateSpec:
    """Everything `create_pod` is given (validated values, never free text)."""

    name: str
    image: str
    gpu_id: str
    datacenter_id: str
    cloud_type: str = "SECURE"
    gpu_count: int = 1
    volume_gb: int = 0
    container_disk_gb: int = 20
    volume_mount_path: str = "/workspace"
    ports: str = "22/tcp"
    min_vcpu_count: int = 1
    min_memory_gb: int = 1
    network_volume_id: str | None = None

    def check(self) -> None:
        """Refuse any value the SDK would paste unescaped into GraphQL unless it is plain."""
        for kind, value in (("name", self.name), ("image", self.image), ("gpu", self.gpu_id),
                            ("datacenter", self.datacenter_id), ("path", self.volume_mount_path),
                            ("ports", self.ports), ("cloud_type", self.cloud_type),
                            *((("name", self.network_volume_id),) if self.network_volume_id else ())):
            if not SAFE[kind].match(value or ""):
                raise ApiError(f"refusing to send {kind} {value!r} to RunPod: it contains characters the "
                               "SDK would not escape", "fatal")


class RunPodAPI:
    """The SDK calls podmagic makes, with retries and error classification."""

    def __init__(self, api_key: str | None = None, *, retry_delays: tuple[float, ...] = RETRY_DELAYS,
                 sleep: Callable[[float], None] = time.sleep):
        self.sdk = load_sdk()
        self.api_key = resolve_api_key(api_key, self.sdk)
        self.sdk.api_key = self.api_key  # create/stop/resume/terminate only read the global
        self.retry_delays, self.sleep = retry_delays, sleep
        self.on_retry: Callable[[str, str], None] = lambda call, why: None

    def _retrying(self, call: str, fn: Callable[[], Any]) -> Any:
        for delay in (*self.retry_delays, None):
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - classified
                kind = classify(exc)
                if kind != "transient":
                    raise _api_error(call, exc, kind) from exc
                if delay is None:
                    raise TransientError(f"{call} kept failing: {describe(exc)}") from exc
                self.on_retry(call, describe(exc))
                self.sleep(delay)
        raise AssertionError("unreachable")

    # -- reads -----------------------------------------------------------
    def get_pod(self, pod_id: str) -> dict | None:
        return self._retrying("get_pod", lambda: self.sdk.get_pod(pod_id))

    def list_pods(self) -> list[dict]:
        return self._retrying("get_pods", lambda: self.sdk.get_pods()) or []

    def find_by_name(self, name: str) -> dict | None:
        return next((p for p in self.list_pods() if p.get("name") == name), None)

    def network_volumes(self) -> list[dict]:
        return self._retrying("get_user", lambda: self.sdk.get_user()).get("networkVolumes") or []

    # -- writes ----------------------------------------------------------
    def create(self, spec: CreateSpec) -> dict:
        """Create, or adopt the pod a lost answer created; CapacityExhausted on stock-out."""
        for delay in (*self.retry_delays, None):
            try:
                return self._create_once(spec)
            except Exception as exc:  # noqa: BLE001 - classified
                kind = classify(exc)
                if kind != "transient":
                    raise _api_error("pod create", exc, kind) from exc
                adopted = self.find_by_name(spec.name)
                if adopted is not None:
                    return adopted
                if delay is None:
                    raise TransientError(f"pod create kept failing: {describe(exc)}") from exc
                self.on_retry("create_pod", describe(exc))
                self.sleep(delay)
        raise AssertionError("unreachable")

    def _create_once(self, spec: CreateSpec) -> dict:
        spec.check()
        return self.sdk.create_pod(
            spec.name, spec.image, spec.gpu_id, cloud_type=spec.cloud_type,
            data_center_id=spec.datacenter_id, gpu_count=spec.gpu_count,
            volume_in_gb=spec.volume_gb, container_disk_in_gb=spec.container_disk_gb,
            min_vcpu_count=spec.min_vcpu_count, min_memory_in_gb=spec.min_memory_gb,
            ports=spec.ports, volume_mount_path=spec.volume_mount_path,
            network_volume_id=spec.network_volume_id, support_public_ip=True, start_ssh=True,
        )

    def terminate(self, pod_id: str) -> bool:
        """Terminate; True when the pod is gone (a pod already gone counts)."""
        try:
            self._retrying("terminate_pod", lambda: self.sdk.terminate_pod(pod_id))
        except ApiError as exc:
            if exc.kind != "not_found":
                raise
        return True

    def stop(self, pod_id: str) -> str:
        """Stop; the resulting desiredStatus ('TERMINATED' if it was already gone)."""
        try:
            answer = self._retrying("stop_pod", lambda: self.sdk.stop_pod(pod_id))
        except ApiError as exc:
            if exc.kind == "not_found":
                return "TERMINATED"
            raise
        return (answer or {}).get("desiredStatus") or "EXITED"

    def resume(self, pod_id: str, gpu_count: int) -> dict:
        return self._retrying("resume_pod", lambda: self.sdk.resume_pod(pod_id, gpu_count))


def _api_error(call: str, exc: BaseException, kind: str) -> ApiError:
    if kind == "capacity":
        return CapacityExhausted(str(exc))
    if kind == "auth":
        return ApiError(AUTH_MESSAGE, "auth")
    return ApiError(f"{call} failed: {exc}", kind)
