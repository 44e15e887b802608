"""A careful client of RunPod's REST API v2 (httpx), built from RunPod's OpenAPI document.

The contract is `shared/reference/runpod-rest-v2/openapi.json` (version 2.0.0): requests are
built from its schemas (`CreatePodRequest`, `PodActionRequest`, `UpdateSshKeysRequest`) and
answers read by them (`Pod`, `ListPodsResponse`, `SshKeys`, `ListGpuTypesResponse`,
`ListNetworkVolumesResponse`, `ErrorResponse`). This module adds what a launcher needs:

- the base URL from `RUNPOD_API_BASE_URL`, read on every call (default
  `https://api.runpod.io`; paths under `/v2/...`), so a proxy can stand in front;
- the API key from `api_key=`, else `RUNPOD_API_KEY`, else `~/.runpod/config.toml`
  (the file `runpod config` writes; read here with tomllib, so the `runpod` package
  and its 1.4 s import stay out of the way);
- one httpx client per backend, with timeouts; retries with backoff on connection
  errors and 5xx, and on 429 after the `Retry-After` the API sends (integer seconds);
- create, which cannot be blindly repeated: a 429 is retried (the request never reached
  the handler), while a 5xx or a broken connection may have created the pod, so the
  listing is polled by name for up to `LOST_CREATE_SEC` (listings lag) before trying
  again; a pod found that way is adopted, and any second pod of that name terminated;
- every failure classified: `capacity` (createPod's 400/403: try the next candidate, as
  the document's own deploy loop does), `not_found` (404), `conflict` (409: the action is
  not valid for the pod's status, e.g. `stop` on a network-volume pod), `auth` (401),
  `transient` (kept failing) or `fatal` (422, 402, ...), each with the API's `detail`.

May import `backends.base` and `podmagic.errors`; never `run` or `ui`.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Callable

from podmagic.backends.base import BackendError
from podmagic.records import record

DEFAULT_BASE_URL = "https://api.runpod.io"
CONFIG_PATH = "~/.runpod/config.toml"
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
MAX_RETRY_AFTER_SEC = 120.0
LOST_CREATE_SEC = 30.0
TIMEOUT = (10.0, 60.0)
"""(connect, read) seconds; a create may take a while to answer."""
POD_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SSH_PORT = "22/tcp"


class ApiError(BackendError):
    """A failed control-plane call; `kind` says what it means, `status` is the HTTP status."""

    def __init__(self, message: str, kind: str = "fatal", status: int | None = None, detail: str = ""):
        super().__init__(message)
        self.kind, self.status, self.detail = kind, status, detail or message


class CapacityExhausted(ApiError):
    """createPod refused this GPU × datacenter (400/403): the next candidate may work."""

    def __init__(self, message: str, status: int | None = 400):
        super().__init__(message, "capacity", status, message)


class TransientError(ApiError):
    """The API kept failing in ways that may pass (network, 5xx, 429)."""

    def __init__(self, message: str):
        super().__init__(message, "transient")


AUTH_MESSAGE = ("RunPod rejected the API key (HTTP 401): check RUNPOD_API_KEY or "
                "~/.runpod/config.toml (`runpod config` writes it)")


def base_url() -> str:
    """Read per call, as the runpod SDK does: a proxy or simulator can stand in front."""
    return (os.environ.get("RUNPOD_API_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def config_api_key(path: str | Path = CONFIG_PATH) -> str | None:
    """`[default] api_key` from the runpod SDK's credentials file, if any."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(Path(os.path.expanduser(str(path))).read_text())
    except (OSError, ValueError):
        return None
    profile = data.get("default") if isinstance(data.get("default"), dict) else data
    key = profile.get("api_key") or profile.get("apikey")
    return str(key) if key else None


def resolve_api_key(explicit: str | None = None) -> str:
    key = explicit or os.environ.get("RUNPOD_API_KEY") or config_api_key()
    if not key:
        raise BackendError("no RunPod API key: export RUNPOD_API_KEY=... or run `runpod config` "
                           "(writes ~/.runpod/config.toml)")
    return key


@record
class CreateSpec:
    """What `create` sends (validated values; becomes a `CreatePodRequest`)."""

    name: str
    image: str
    gpu_id: str
    datacenter_id: str
    cloud_type: str = "SECURE"
    gpu_count: int = 1
    volume_gb: int = 0
    container_disk_gb: int = 20
    volume_mount_path: str = "/workspace"
    ports: tuple[str, ...] = (SSH_PORT,)
    network_volume_id: str | None = None
    env: tuple[tuple[str, str], ...] = ()

    def body(self) -> dict:
        """The `CreatePodRequest` (no fields outside the schema: it has unevaluatedProperties: false)."""
        body: dict[str, Any] = {
            "name": self.name, "image": self.image,
            "gpu": {"id": self.gpu_id, "count": int(self.gpu_count)},
            "dataCenterIds": [self.datacenter_id], "ports": with_ssh_port(self.ports),
            "disk": max(1, int(self.container_disk_gb)), "startSsh": True,
        }
        if self.cloud_type in ("SECURE", "COMMUNITY"):
            body["cloud"] = self.cloud_type
        if self.network_volume_id:
            body["mounts"] = {"network": [{"volumeId": self.network_volume_id, "path": self.volume_mount_path}]}
        elif self.volume_gb:
            # PersistentMount has a 10 GB floor upstream
            body["mounts"] = {"persistent": {"size": max(10, int(self.volume_gb)), "path": self.volume_mount_path}}
        if self.env:
            body["env"] = {str(k): str(v) for k, v in self.env}
        return body


def with_ssh_port(ports) -> list[str]:
    """The user's ports plus `22/tcp`: `ssh.direct` exists only with it (PodSsh in the document)."""
    out = [str(p).strip() for p in ports if str(p).strip()]
    return out if SSH_PORT in out else [*out, SSH_PORT]


class RunPodAPI:
    """The REST v2 calls podmagic makes, with retries and error classification."""

    def __init__(self, api_key: str | None = None, *, retry_delays: tuple[float, ...] = RETRY_DELAYS,
                 sleep: Callable[[float], None] = time.sleep, lost_create_sec: float = LOST_CREATE_SEC,
                 timeout: tuple[float, float] = TIMEOUT, http=None):
        import httpx

        self.api_key = resolve_api_key(api_key)
        self.retry_delays, self.sleep, self.lost_create_sec = retry_delays, sleep, lost_create_sec
        self.http = http or httpx.Client(
            timeout=httpx.Timeout(timeout[1], connect=timeout[0]),
            headers={"Authorization": f"Bearer {self.api_key}", "Accept": "application/json",
                     "User-Agent": "podmagic"})
        self.on_retry: Callable[[str, str], None] = lambda call, why: None

    def bound(self, on_retry: Callable[[str, str], None]) -> "RunPodAPI":
        """A view sharing this client's connection pool that reports its retries to `on_retry`."""
        view = object.__new__(RunPodAPI)
        view.__dict__.update(self.__dict__)
        view.on_retry = on_retry
        return view

    def close(self) -> None:
        self.http.close()

    # -- transport ---------------------------------------------------------
    def _once(self, method: str, path: str, *, json: Any = None, params: dict | None = None):
        """One attempt: the response, or `_Retry` for what may pass (never a 4xx but 429)."""
        import httpx

        try:
            response = self.http.request(method, base_url() + path, json=json, params=params)
        except httpx.TransportError as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}", None, maybe_applied=method != "GET") from exc
        if response.status_code == 429:
            raise _Retry(f"HTTP 429 {_detail(response)}", _retry_after(response), maybe_applied=False)
        if response.status_code >= 500:
            raise _Retry(f"HTTP {response.status_code} {_detail(response)}", None, maybe_applied=method != "GET")
        return response

    def _retrying(self, call: str, method: str, path: str, **kw):
        for delay in (*self.retry_delays, None):
            try:
                return self._once(method, path, **kw)
            except _Retry as exc:
                if delay is None:
                    raise TransientError(f"{call} kept failing: {exc.why}") from None
                self.on_retry(call, exc.why)
                self.sleep(exc.retry_after if exc.retry_after is not None else delay)
        raise AssertionError("unreachable")

    def _json(self, call: str, method: str, path: str, **kw) -> Any:
        response = self._retrying(call, method, path, **kw)
        if response.status_code >= 400:
            raise _error(call, response)
        return response.json() if response.content else None

    # -- reads -------------------------------------------------------------
    def get_pod(self, pod_id: str) -> dict | None:
        """The pod, or None when it is gone (404: terminated pods are not shown)."""
        _check_id(pod_id)
        try:
            return self._json("getPod", "GET", f"/v2/pods/{pod_id}")
        except ApiError as exc:
            if exc.kind == "not_found":
                return None
            raise

    def list_pods(self) -> list[dict]:
        """Every pod on the account (the `ListPodsResponse` envelope; the document defines no paging)."""
        return list((self._json("listPods", "GET", "/v2/pods") or {}).get("pods") or [])

    def find_by_name(self, name: str) -> list[dict]:
        """Pods with this name, oldest first."""
        return sorted((p for p in self.list_pods() if p.get("name") == name), key=lambda p: p.get("createdAt") or "")

    def network_volumes(self) -> list[dict]:
        return list((self._json("listNetworkVolumes", "GET", "/v2/network-volumes") or {}).get("networkVolumes") or [])

    def ssh_keys(self) -> list[str]:
        """The account's registered public keys (what `startSsh` puts on a pod)."""
        return list((self._json("getSshKeys", "GET", "/v2/account/ssh-keys") or {}).get("keys") or [])

    def gpu_types(self, *, cloud: str = "SECURE", gpu_count: int = 1, availability: bool = True) -> list[dict]:
        params = {"include": "AVAILABILITY", "product": "POD", "count": gpu_count, "cloud": cloud} \
            if availability else None
        return list((self._json("listGpuTypes", "GET", "/v2/catalog/gpus", params=params) or {}).get("gpus") or [])

    # -- writes ------------------------------------------------------------
    def create(self, spec: CreateSpec) -> dict:
        """Create, or adopt the pod a lost answer created; CapacityExhausted for this candidate."""
        body = spec.body()
        for delay in (*self.retry_delays, None):
            try:
                response = self._once("POST", "/v2/pods", json=body)
            except _Retry as exc:
                if exc.maybe_applied:
                    adopted = self.adopt(spec.name)
                    if adopted is not None:
                        return adopted
                if delay is None:
                    raise TransientError(f"createPod kept failing: {exc.why}") from None
                self.on_retry("createPod", exc.why)
                self.sleep(exc.retry_after if exc.retry_after is not None else delay)
                continue
            if response.status_code in (400, 403):
                raise CapacityExhausted(_detail(response) or f"HTTP {response.status_code}", response.status_code)
            if response.status_code >= 400:
                raise _error("createPod", response)
            return response.json()
        raise AssertionError("unreachable")

    def adopt(self, name: str) -> dict | None:
        """After a create whose answer was lost: poll the listing (it lags) for the pod by name."""
        deadline = time.monotonic() + self.lost_create_sec
        delay = 0.25
        while True:
            try:
                found = self.find_by_name(name)
            except ApiError:
                found = []
            if found:
                for extra in found[1:]:  # two creates got through: keep one, never bill for both
                    self.terminate(extra["id"])
                return found[0]
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.on_retry("createPod", f"answer lost; looking for pod {name} in the listing")
            self.sleep(min(delay, left))
            delay = min(delay * 2, 4.0)

    def drop_duplicates(self, name: str, keep: str) -> list[str]:
        """Terminate pods named `name` other than `keep` (a create that got through twice)."""
        dropped = []
        for pod in self.find_by_name(name):
            if pod.get("id") != keep:
                self.terminate(pod["id"])
                dropped.append(pod["id"])
        return dropped

    def action(self, pod_id: str, action: str) -> dict | None:
        """`POST /v2/pods/{id}/action`; the updated pod (None for terminate's 204)."""
        _check_id(pod_id)
        return self._json(f"podAction:{action}", "POST", f"/v2/pods/{pod_id}/action", json={"action": action})

    def terminate(self, pod_id: str) -> bool:
        """Terminate; True when the pod is gone (a pod already gone counts)."""
        try:
            self.action(pod_id, "terminate")
        except ApiError as exc:
            if exc.kind != "not_found":
                raise
        return True

    def stop(self, pod_id: str) -> str:
        """Stop; the resulting status ('TERMINATED' if it was already gone). 409 raises (kind 'conflict')."""
        try:
            pod = self.action(pod_id, "stop")
        except ApiError as exc:
            if exc.kind == "not_found":
                return "TERMINATED"
            if exc.kind == "conflict":  # already stopped is what was asked for; anything else is a refusal
                now = self.get_pod(pod_id)
                if now is None or now.get("status") in ("EXITED", "TERMINATED"):
                    return (now or {}).get("status") or "TERMINATED"
            raise
        return (pod or {}).get("status") or "EXITED"

    def resume(self, pod_id: str) -> dict:
        return self.action(pod_id, "start") or {}


class _Retry(ApiError):
    def __init__(self, why: str, retry_after: float | None, maybe_applied: bool):
        super().__init__(why, "transient")
        self.why, self.retry_after, self.maybe_applied = why, retry_after, maybe_applied


def _retry_after(response) -> float | None:
    try:
        return min(max(float(response.headers.get("Retry-After", "")), 0.0), MAX_RETRY_AFTER_SEC)
    except ValueError:
        return None


def _detail(response) -> str:
    """The `ErrorResponse.detail` (plus its `errors`), or a short excerpt of a non-JSON body."""
    try:
        data = response.json()
    except ValueError:
        text = re.sub(r"<[^>]+>|\s+", " ", response.text or "").strip()
        return text[:200]
    if not isinstance(data, dict):
        return str(data)[:200]
    detail = str(data.get("detail") or data.get("title") or "")
    errors = data.get("errors") or []
    return detail + (f" ({'; '.join(map(str, errors))})" if errors else "")


KINDS = {401: "auth", 404: "not_found", 409: "conflict", 400: "bad_request", 403: "forbidden",
         422: "invalid", 402: "payment"}


def _error(call: str, response) -> ApiError:
    status = response.status_code
    kind = KINDS.get(status, "fatal")
    if kind == "auth":
        return ApiError(AUTH_MESSAGE, "auth", status)
    detail = _detail(response)
    return ApiError(f"{call} failed (HTTP {status}): {detail}", kind, status, detail)


def _check_id(pod_id: str) -> None:
    if not POD_ID.match(pod_id or ""):
        raise ApiError(f"not a pod id: {pod_id!r}", "fatal")


__all__ = ["ApiError", "CapacityExhausted", "CreateSpec", "RunPodAPI", "TransientError", "base_url",
           "config_api_key", "resolve_api_key", "with_ssh_port"]
