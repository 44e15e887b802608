"""The jupyter_server extension behind the podmagic JupyterLab panel.

It serves, under the server's base URL and behind its authentication:

  GET  podmagic/schema                 the `%%pod` YAML schema (podmagic.spec.schema)
  GET  podmagic/runs                   the runs of the project, newest first
  GET  podmagic/runs/<run_id>          one run: summary, status and manifest
  GET  podmagic/runs/<run_id>/log      the tail of its run.log
  GET  podmagic/runs/<run_id>/metrics  its GPU and job-metric series, thinned (ui/charts.series_payload)
  POST podmagic/runs/<run_id>/stop     ask the run to stop (RunDir.request_stop)

The project root is the server's root_dir, or the git top level above it.
Everything is read through `podmagic.run.store`; this package imports neither
ipywidgets, paramiko nor runpod.
"""

from __future__ import annotations

from typing import Any

from podmagic.ui.serverext.project import project_root_for


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Tell jupyter_server where the extension lives."""
    return [{"module": "podmagic.ui.serverext"}]


def _load_jupyter_server_extension(server_app) -> None:
    """Register the handlers on the running server."""
    from podmagic.ui.serverext.handlers import register

    root = project_root_for(server_app.root_dir)
    register(server_app.web_app, root)
    server_app.log.info("podmagic: serving runs of %s", root)


# The name older servers look for.
load_jupyter_server_extension = _load_jupyter_server_extension
