"""podmagic: a `%%pod` cell runs a job on a RunPod pod, an SSH host or a local sandbox.

`%load_ext podmagic` registers the magics. Importing the package stays light:
IPython front ends, ipywidgets, paramiko and runpod are imported only where
they are used.
"""

from __future__ import annotations

__version__ = "0.1.0"


def load_ipython_extension(ipython):  # pragma: no cover - exercised through notebooks
    from .magics import load_ipython_extension as load

    load(ipython)
