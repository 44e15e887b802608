"""runpod: RunPod's REST v2 control plane (placement with failover, waiting for SSH, lifecycle,
audit, the GPU catalogue), then the ssh transport for everything on the pod.

May import `backends.base`, `backends.ssh`, `plan` data and `podmagic.errors`; never `run` or
`ui`. httpx is imported only here (lazily); the `runpod` SDK is not used.
"""

from __future__ import annotations


def catalog(gpu_ids=None, *, cloud: str = "SECURE", gpu_count: int = 1, api=None):
    """GPU types with price and pod availability: see `backends.runpod.gpus.catalog`."""
    from podmagic.backends.runpod.gpus import catalog as _catalog

    return _catalog(gpu_ids, cloud=cloud, gpu_count=gpu_count, api=api)
