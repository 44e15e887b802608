"""Tornado handlers: authenticated jupyter_server APIHandlers, checked by the
server's authorizer under the resource `podmagic` (GET is `read`, Stop is
`write`), so a read-only user sees the pods but cannot stop them."""

from __future__ import annotations

import json
from pathlib import Path

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from podmagic.errors import RunNotFound
from podmagic.run import store
from podmagic.spec import schema
from podmagic.ui.serverext.project import run_dir_for
from podmagic.ui.serverext.views import log_tail, run_detail, run_list, run_row

NAMESPACE = "podmagic"
RUN_ID = r"(?P<run_id>[^/]+)"


class _Base(APIHandler):
    """Shared setup: the project root and run lookup with 400/404 errors."""

    auth_resource = NAMESPACE

    def initialize(self, project_root: Path) -> None:
        self.project_root = project_root

    def run_dir(self, run_id: str) -> Path:
        try:
            return run_dir_for(self.project_root, run_id)
        except ValueError as exc:
            raise tornado.web.HTTPError(400, str(exc)) from exc
        except RunNotFound as exc:
            raise tornado.web.HTTPError(404, f"no such run: {run_id}") from exc

    def send(self, data) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))


class SchemaHandler(_Base):
    """GET the `%%pod` YAML schema."""

    @tornado.web.authenticated
    @authorized
    def get(self) -> None:
        self.send(schema.as_json())


class RunsHandler(_Base):
    """GET the project's runs."""

    @tornado.web.authenticated
    @authorized
    def get(self) -> None:
        self.send(run_list(self.project_root))


class RunHandler(_Base):
    """GET one run."""

    @tornado.web.authenticated
    @authorized
    def get(self, run_id: str) -> None:
        self.send(run_detail(self.run_dir(run_id)))


class LogHandler(_Base):
    """GET the tail of one run's log (`?lines=N`, at most 2000)."""

    @tornado.web.authenticated
    @authorized
    def get(self, run_id: str) -> None:
        run_dir = self.run_dir(run_id)
        try:
            lines = int(self.get_query_argument("lines", "200"))
        except ValueError as exc:
            raise tornado.web.HTTPError(400, "lines must be an integer") from exc
        self.send(log_tail(run_dir, min(max(lines, 1), 2000)))


class MetricsHandler(_Base):
    """GET one run's series for sparklines: GPU util/mem % and each numeric metric of the job (thinned)."""

    @tornado.web.authenticated
    @authorized
    def get(self, run_id: str) -> None:
        from podmagic.ui.charts import series_payload

        run_dir = self.run_dir(run_id)
        try:
            points = int(self.get_query_argument("points", "120"))
        except ValueError as exc:
            raise tornado.web.HTTPError(400, "points must be an integer") from exc
        self.send(series_payload(run_dir, min(max(points, 2), 1000)))


class StopHandler(_Base):
    """POST: ask a live run to stop (409 if it is not live); its runner polls the stop file."""

    @tornado.web.authenticated
    @authorized
    def post(self, run_id: str) -> None:
        run_dir = self.run_dir(run_id)
        if not run_row(run_dir)["live"]:
            raise tornado.web.HTTPError(409, f"run {run_id} is not live")
        store.RunDir(run_dir).request_stop(f"stop requested from JupyterLab by {self.current_user!s:.80}")
        self.send({"run_id": run_id, "stop_requested": True})


def register(web_app, project_root: Path) -> None:
    """Add the handlers under `<base_url>podmagic/`."""
    base = url_path_join(web_app.settings["base_url"], NAMESPACE)
    args = {"project_root": project_root}
    routes = [
        (r"/schema", SchemaHandler),
        (r"/runs", RunsHandler),
        (rf"/runs/{RUN_ID}", RunHandler),
        (rf"/runs/{RUN_ID}/log", LogHandler),
        (rf"/runs/{RUN_ID}/metrics", MetricsHandler),
        (rf"/runs/{RUN_ID}/stop", StopHandler),
    ]
    web_app.add_handlers(".*$", [(base + path, cls, args) for path, cls in routes])
