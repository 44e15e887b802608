"""The simulator's image catalogue: which tags exist, and what is in them.

RunPod accepts any image string at create; a tag that does not exist never starts, and the
pod sits there billing (runpod-deploy's "phantom image tag": `uptimeSeconds: 0`, `ssh.error:
pod not ready`; shared/reference/runpod-deploy.md, pitfall 15). Tags that exist differ in
what they carry:

- `runpod/pytorch:2.4.0...` (the seed recipe's image and the py3.10/py3.11 CUDA 12.4.1 tags):
  python3, no uv (issue 18; the runpod/containers pytorch images of that generation install
  no uv);
- the newer `runpod/pytorch:1.0.x-cu...-torch...-ubuntu....` scheme (the tag the OpenAPI
  document uses in its examples): uv in `~/.local/bin`, put on PATH only by a file in
  `/etc/profile.d`, which a non-login SSH session never reads;
- anything added with `RunPodSimulator(images=...)`, `--image TAG=uv-mode`.

Whether a given tag really exists on Docker Hub can only be told by the registry
(`podmagic validate --check-image`).
"""

from __future__ import annotations

import re

from podmagic.records import record

UV_MODES = ("none", "local-bin", "path")


@record
class Image:
    pattern: str
    uv: str = "none"
    """'none': no uv; 'local-bin': ~/.local/bin/uv, on PATH via /etc/profile.d only; 'path': on PATH."""


CATALOGUE: tuple[Image, ...] = (
    Image(r"runpod/pytorch:2\.4\.0"),
    Image(r"runpod/pytorch:2\.4\.0-py3\.1[01]-cuda12\.4\.1-devel-ubuntu22\.04"),
    Image(r"runpod/pytorch:2\.[0-3]\.\d+-py3\.1[01]-cuda1[12]\.\d+\.\d+-devel-ubuntu22\.04"),
    Image(r"runpod/pytorch:1\.0\.\d+-cu\d{3,4}-torch\d{3}-ubuntu(2204|2404)", uv="local-bin"),
    Image(r"runpod/base:\d+\.\d+\.\d+-ubuntu(2204|2404)", uv="local-bin"),
)


def lookup(image: str, extra: dict[str, str] | None = None) -> Image | None:
    """The catalogue entry for `image`, or None for a tag that does not exist (a phantom)."""
    for tag, uv in (extra or {}).items():
        if tag == image:
            return Image(re.escape(tag), uv)
    return next((i for i in CATALOGUE if re.fullmatch(i.pattern, image)), None)
