"""Does an image tag exist? Docker Hub's v2 API, before any pod is created for it.

RunPod accepts any image string; a tag that does not exist never starts and the pod bills
while it sits there (runpod-deploy's "phantom image tag"). `image_exists` asks Docker Hub
(`GET /v2/repositories/<namespace>/<name>/tags/<tag>`: 200 or 404; no account needed) for
images that live there (`runpod/pytorch:2.4.0...`, `ubuntu:22.04` → `library/ubuntu`); images of
other registries (`ghcr.io/...`) and digests cannot be told and answer None. The base URL is
`PODMAGIC_DOCKER_HUB_URL` (default https://hub.docker.com; a stub on 127.0.0.1 in tests).
`check_image` is `podmagic validate --check-image`'s verdict line.

May import httpx (lazily); never `run` or `ui`.
"""

from __future__ import annotations

import os
from urllib.parse import quote

DEFAULT_HUB = "https://hub.docker.com"


def hub_url() -> str:
    return (os.environ.get("PODMAGIC_DOCKER_HUB_URL") or DEFAULT_HUB).rstrip("/")


def split(image: str) -> tuple[str, str, str] | None:
    """(namespace, name, tag) of a Docker Hub image, or None for another registry or a digest."""
    if not image or "@" in image:
        return None
    head, _, rest = image.partition("/")
    if rest and ("." in head or ":" in head or head == "localhost"):
        if head not in ("docker.io", "index.docker.io", "registry-1.docker.io"):
            return None
        image = rest
    path, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
    namespace, _, name = path.rpartition("/")
    if "/" in namespace:
        return None
    return namespace or "library", name, tag or "latest"


def image_exists(image: str, timeout: float = 15.0) -> bool | None:
    """True / False from Docker Hub; None when it cannot be told (other registry, network, odd answer)."""
    import httpx

    parts = split(image)
    if parts is None:
        return None
    namespace, name, tag = (quote(p, safe="") for p in parts)
    try:
        answer = httpx.get(f"{hub_url()}/v2/repositories/{namespace}/{name}/tags/{tag}", timeout=timeout)
    except httpx.HTTPError:
        return None
    if answer.status_code == 200:
        return True
    if answer.status_code == 404:
        return False
    return None


def check_image(image: str | None) -> str:
    """One line for the user: ok, a loud warning for a phantom tag, or why it could not be told."""
    if not image:
        return "info: --check-image: no pod.image to check"
    found = image_exists(image)
    if found is True:
        return f"ok: image {image} exists on Docker Hub"
    if found is False:
        return (f"WARNING: image {image} does not exist on Docker Hub: RunPod would accept it, and the pod would "
                "bill while it never starts (a phantom tag). Fix pod.image (see the tags at "
                "https://hub.docker.com/r/" + "/".join(split(image)[:2]) + "/tags)")
    return f"info: --check-image: could not tell whether {image} exists (not on Docker Hub, or no answer)"
