"""runpod: RunPod's control plane (placement with failover, waiting for SSH, lifecycle, audit),
then the ssh transport for everything on the pod.

May import `backends.base`, `backends.ssh`, `plan` data and `podmagic.errors`; never `run` or
`ui`. The only place the `runpod` package is imported.
"""
