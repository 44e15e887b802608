"""Placement with failover: walk datacenters × gpu_order, datacenter-major.

runpod-deploy's order: for each datacenter in `pod.datacenters`, each GPU in
`pod.gpu_order`; the datacenter outranks the GPU. Unlike runpod-deploy (which
picked from a stock snapshot and did not retry a failed create), every
combination is *tried*: a create refused for capacity moves on; any other
error is fatal with the API's message. Each attempt is a
`placement_attempt` event (a row of the run view: GPU, datacenter, outcome,
reason); leaving a datacenter is a `datacenter_failover` event and the
winner a `gpu_selected` event. All exhausted: one `CapacityError` listing
what was tried.
"""

from __future__ import annotations

from typing import Callable

from podmagic.backends.base import CapacityError
from podmagic.backends.runpod.api import CapacityExhausted
from podmagic.records import record


@record
class Attempt:
    gpu_id: str
    datacenter_id: str
    outcome: str
    reason: str = ""


@record
class Placed:
    """The created pod (the SDK's answer) and where it landed."""

    pod: dict
    gpu_id: str
    datacenter_id: str
    attempts: tuple[Attempt, ...]


def place(datacenters: tuple[str, ...], gpu_order: tuple[str, ...],
          create: Callable[[str, str], dict], emit: Callable[..., None]) -> Placed:
    """Create on the first combination with capacity; `create(gpu, dc)` does one try."""
    if not datacenters or not gpu_order:
        raise CapacityError("pod.datacenters and pod.gpu_order must each name at least one entry")
    attempts: list[Attempt] = []
    for index, dc in enumerate(datacenters):
        reasons = []
        for gpu in gpu_order:
            emit("placement_attempt", gpu_id=gpu, datacenter_id=dc, outcome="trying", reason="")
            try:
                pod = create(gpu, dc)
            except CapacityExhausted as exc:
                attempts.append(Attempt(gpu, dc, "no_capacity", str(exc)))
                reasons.append(f"{gpu}: {exc}")
                emit("placement_attempt", gpu_id=gpu, datacenter_id=dc, outcome="no_capacity", reason=str(exc))
                continue
            except Exception as exc:
                emit("placement_attempt", gpu_id=gpu, datacenter_id=dc, outcome="error", reason=str(exc)[:300])
                raise
            attempts.append(Attempt(gpu, dc, "created"))
            emit("placement_attempt", gpu_id=gpu, datacenter_id=dc, outcome="created", reason="")
            emit("gpu_selected", gpu_id=gpu, datacenter_id=dc, attempts=len(attempts))
            return Placed(pod, gpu, dc, tuple(attempts))
        following = datacenters[index + 1] if index + 1 < len(datacenters) else None
        emit("datacenter_failover", **{"from": dc, "to": following,
                                       "reason": "no capacity for " + ", ".join(gpu_order)})
    raise CapacityError(_exhausted(datacenters, gpu_order, attempts))


def _exhausted(datacenters, gpu_order, attempts: list[Attempt]) -> str:
    lines = [f"no capacity for any GPU in {list(gpu_order)} across datacenters {list(datacenters)}; tried:"]
    lines += [f"  {a.datacenter_id} × {a.gpu_id}: {a.reason}" for a in attempts]
    lines.append("widen pod.datacenters or pod.gpu_order, or retry later")
    return "\n".join(lines)
