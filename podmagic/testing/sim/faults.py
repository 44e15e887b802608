"""Injected failures of the simulated API, consumed call by call.

A `Fault` is queued for an operation (an operationId of the document such as `createPod`,
`podAction:stop` for one action, or `*` for any) and answers the next matching call instead
of (or, with `apply=True`, after) the real work:

- an HTTP status with a body: a gateway's HTML page for 5xx (what a load balancer in front
  sends), or an `ErrorResponse` with `message` as its detail; a 429 carries `Retry-After`;
- `drop=True`: the connection is closed with no answer at all;
- a delay before answering (to trip a client timeout); with `status=None`
  and no message the call then proceeds normally.

`apply=True` models the nastiest case: the control plane did the work (the
pod exists, the terminate happened) but the client never saw the answer.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque

from podmagic.records import record

GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@record
class Fault:
    """One injected answer for one call."""

    status: int | None = 502
    body: str | None = None
    """None: an `ErrorResponse`; else sent as text/html (a gateway's page, outside the document)."""
    message: str | None = None
    delay_sec: float = 0.0
    apply: bool = False
    retry_after: int = 1
    drop: bool = False

    @property
    def answers(self) -> bool:
        """Whether this fault replaces the answer (else it only delays)."""
        return self.drop or self.message is not None or self.status is not None


class FaultPlan:
    """Per-operation queues of faults; thread-safe; records what fired."""

    def __init__(self):
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Fault]] = defaultdict(deque)
        self.fired: list[tuple[str, Fault]] = []

    def add(self, operation: str, fault: Fault, times: int = 1) -> None:
        with self._lock:
            self._queues[operation].extend([fault] * times)

    def take(self, operation: str) -> Fault | None:
        with self._lock:
            for key in (operation, operation.split(":")[0], "*"):
                if self._queues[key]:
                    fault = self._queues[key].popleft()
                    self.fired.append((operation, fault))
                    return fault
        return None

    def pending(self, operation: str | None = None) -> int:
        with self._lock:
            if operation is not None:
                return len(self._queues[operation])
            return sum(len(q) for q in self._queues.values())

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()
