"""Issue 11: a local pod is a pod. Every escape the issue lists, tried on both sandbox modes
(a bubblewrap namespace, and the mapped fallback forced by PODMAGIC_LOCAL_SANDBOX=mapped), with
canary files outside the sandbox that must stay present and untouched."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from podmagic.backends.local import sandbox
from podmagic.run import api
from podmagic.spec.jobspec import SpecError

from conftest import git
from helpers import run_spec

MODES = [pytest.param("namespace", marks=pytest.mark.skipif(sandbox.proc_args() is None,
                                                           reason="bubblewrap cannot make a namespace here")),
         "mapped"]


@pytest.fixture(params=MODES)
def mode(request, monkeypatch, pod_env):
    monkeypatch.setenv("PODMAGIC_LOCAL_SANDBOX", request.param)
    return request.param


@pytest.fixture
def canary(tmp_path) -> Path:
    """A folder of the client's own files, outside project and sandbox."""
    folder = tmp_path / "client-files"
    folder.mkdir()
    (folder / "precious.txt").write_text("client data\n")
    return folder


def untouched(canary: Path) -> None:
    assert sorted(p.name for p in canary.iterdir()) == ["precious.txt"]
    assert (canary / "precious.txt").read_text() == "client data\n"


def pod_of(manifest: dict, pod_env: Path) -> Path:
    return pod_env / "pods" / manifest["pod_id"]


# ---------------------------------------------------------------- a program's own paths

def test_a_program_writing_workspace_itself_gets_its_artifact_pulled(mode, pod_env, project):
    (project / "train.py").write_text(textwrap.dedent("""\
        import json, os, pathlib
        out = pathlib.Path("/workspace" + "/out")   # built at run time: no text to rewrite
        out.mkdir(parents=True, exist_ok=True)
        (out / "m.json").write_text(json.dumps({"loss": 0.25, "cwd": os.getcwd()}))
    """))
    git(project, "commit", "-qam", "train")
    text = ("run: |\n  uv run --no-project python train.py\n  ls /workspace/out\n"
            "artifacts:\n  - {label: m, remote_path: /workspace/out/, local_path: \"{run_dir}/out/\"}\n")
    if mode == "mapped":  # the fallback only redirects command text: the program is pointed there by hand
        text = text.replace('"/workspace" + "/out"', "os.environ['OUT']")
        (project / "train.py").write_text((project / "train.py").read_text().replace(
            '"/workspace" + "/out"', "os.environ['OUT']"))
        git(project, "commit", "-qam", "env")
        text = text.replace("uv run", "OUT=/workspace/out uv run")
    manifest, plan, rec = run_spec(text, project)
    assert manifest["failed"] is False, manifest["error"]
    assert manifest["sandbox"] == mode
    got = json.loads((plan.run_dir / "out" / "m.json").read_text())
    assert got["loss"] == 0.25
    assert "m.json" in (plan.run_dir / "run.log").read_text()
    if mode == "namespace":
        assert got["cwd"] == "/workspace/repo"
        assert not Path("/workspace/out/m.json").exists()


def test_bare_python3_is_the_pods_not_the_clients_venv(mode, pod_env, project):
    text = ('pod: {python_version: "3.12.1"}\n'
            "run: |\n  python3 -c 'import sys; print(\"exe\", sys.executable, sys.prefix)'\n  echo \"PATH=$PATH\"\n")
    manifest, plan, rec = run_spec(text, project)
    assert manifest["failed"] is False, manifest["error"]
    log = (plan.run_dir / "run.log").read_text()
    exe = next(line for line in log.splitlines() if line.startswith("exe ")).split()
    assert not exe[1].startswith(sys.prefix) and exe[2] != sys.prefix, exe
    path_line = next(line for line in log.splitlines() if line.startswith("PATH="))
    assert sys.prefix not in path_line and str(Path(sys.executable).parent) not in path_line
    assert manifest["remote_python_path"] and not manifest["remote_python_path"].startswith(sys.prefix)
    assert manifest["python_resolved"] == "3.12.1"
    if manifest["remote_python_version"] != "3.12.1":
        warnings = [e.data["message"] for e in rec.events if e.kind == "warning"]
        assert any("bare python/python3" in w and "uv run python" in w for w in warnings), warnings


def test_uv_run_python_is_not_warned_about(mode, pod_env, project):
    manifest, _, rec = run_spec('pod: {python_version: "3.12.1"}\nrun: uv run --no-project python -V\n', project)
    assert manifest["failed"] is False
    assert not [e for e in rec.events if e.kind == "warning" and "bare python" in e.data["message"]]


# ---------------------------------------------------------------- refused before anything exists

BAD = [
    ("staging-absolute", "staging:\n  - {label: a, source: train.py, destination: /etc/podmagic-x}\nrun: x\n",
     "staging[0].destination", 3),
    ("staging-dotdot", "staging:\n  - {label: a, source: ./, destination: /workspace/../../x, delete: true}\n"
     "run: x\n", "staging[0].destination", 3),
    ("staging-relative", "staging:\n  - {label: a, source: ./, destination: repo}\nrun: x\n",
     "staging[0].destination", 3),
    ("secret-relative", "secrets:\n  - {name: s, env: [HOME], destination: secrets/env}\nrun: x\n",
     "secrets[0].destination", 3),
    ("secret-outside", "secrets:\n  - {name: s, env: [HOME], destination: /var/tmp/podmagic-s}\nrun: x\n",
     "secrets[0].destination", 3),
    ("log-outside", "run: {body: x, log_path: /var/tmp/podmagic.log}\n", "run.log_path", 2),
    ("script-outside", "run: {body: x, script_path: /usr/local/bin/podmagic-run.sh}\n", "run.script_path", 2),
    ("artifact-outside", "run: x\nartifacts:\n  - {label: a, remote_path: /etc/passwd, local_path: got}\n",
     "artifacts[0].remote_path", 4),
    ("artifact-dotdot", "run: x\nartifacts:\n  - {label: a, remote_path: /workspace/../etc, local_path: got}\n",
     "artifacts[0].remote_path", 4),
]


@pytest.mark.parametrize("name,text,field,line", BAD, ids=[b[0] for b in BAD])
def test_a_pod_path_leaving_the_pod_is_refused_with_its_position(name, text, field, line, pod_env, project):
    runs = project / "artifacts"
    with pytest.raises(SpecError) as caught:
        api.prepare(text, cwd=project, line_offset=1)
    message = str(caught.value)
    assert message.startswith(f"cell:{line}:") and field in message, message
    assert not runs.exists() and not pod_env.exists()  # nothing was created


def test_secret_destination_must_be_absolute_on_every_backend(project):
    with pytest.raises(SpecError, match="absolute"):
        api.prepare("secrets:\n  - {name: s, env: [HOME], destination: env}\nrun: x\n", cwd=project,
                    backend="runpod")


def test_artifact_local_path_through_a_symlinked_folder_is_refused(project, canary):
    (project / "results").symlink_to(canary)
    with pytest.raises(SpecError, match="outside the project") as caught:
        api.prepare("run: x\nartifacts:\n  - {label: a, remote_path: /workspace/x, local_path: results/x, "
                    "delete: true}\n", cwd=project, line_offset=1)
    assert str(caught.value).startswith("cell:4:")
    untouched(canary)


# ---------------------------------------------------------------- symlinks at run time

def test_a_pod_symlink_artifact_is_pulled_as_a_symlink_not_the_clients_file(mode, pod_env, project, canary):
    target = canary / "precious.txt"
    body = (f"mkdir -p /workspace/out && ln -s {target} /workspace/out/link && ln -s ../../.. /workspace/out/up"
            " && echo real > /workspace/out/real.txt")
    manifest, plan, _ = run_spec(f"staging: []\nrun: '{body}'\nartifacts:\n"
                                 "  - {label: o, remote_path: /workspace/out/, local_path: \"{run_dir}/o/\"}\n"
                                 "  - {label: l, remote_path: /workspace/out/link, local_path: \"{run_dir}/l\"}\n",
                                 project)
    assert manifest["failed"] is False, manifest["error"]
    got = plan.run_dir / "o"
    assert (got / "real.txt").read_text() == "real\n"
    assert (got / "link").is_symlink() and os.readlink(got / "link") == str(target)
    assert (got / "up").is_symlink() and os.readlink(got / "up") == "../../.."
    assert (plan.run_dir / "l").is_symlink()
    untouched(canary)


def test_a_remote_path_through_a_pod_symlink_out_of_the_pod_fails_that_pull(mode, pod_env, project, canary):
    manifest, plan, _ = run_spec("staging: []\nrun: 'ln -s ../../.. /workspace/esc'\nartifacts:\n"
                                 "  - {label: e, remote_path: /workspace/esc/, local_path: \"{run_dir}/e/\"}\n",
                                 project)
    assert manifest["failed"] is True
    assert manifest["artifacts"][0]["status"] == "failed" and "outside the pod" in manifest["artifacts"][0]["error"]
    assert not (plan.run_dir / "e").exists() or not any((plan.run_dir / "e").iterdir())


def test_a_job_that_puts_a_symlink_where_its_log_was_cannot_redirect_the_log(mode, pod_env, project, canary):
    """The runner reads the log the job writes to (the file open from its first read), not whatever later
    stands at its path: a symlink to the client's files there is never read, and no line is lost."""
    body = (f'log=$(readlink /proc/$$/fd/1); echo first; sleep 0.5; rm -f "$log"; '
            f'ln -s {canary / "precious.txt"} "$log"; sleep 0.5; echo second')
    manifest, plan, rec = run_spec(f"staging: []\nrun: '{body}'\n", project)
    assert manifest["failed"] is False, manifest["error"]
    assert (plan.run_dir / "run.log").read_text() == "first\nsecond\n"
    assert "".join(e.data["text"] for e in rec.events if e.kind == "output") == "first\nsecond\n"
    untouched(canary)


def test_staging_into_a_pod_symlink_to_client_files_never_touches_them(mode, pod_env, project, canary):
    """setup makes the staging destination a link out of the pod; delete: true must not reach the link's target."""
    setup = f"ln -s {canary} /workspace/dest && ln -s ../../../.. /workspace/dest2"
    text = (f"setup: [{{command: '{setup}'}}]\nstaging:\n"
            "  - {label: a, source: ./, destination: /workspace/dest/, delete: true}\nrun: ls /workspace\n"
            "lifecycle: {on_success: stop}\n")
    manifest, _, _ = run_spec(text, project)
    untouched(canary)
    if mode == "mapped":  # an absolute link is a host path here: leaving the pod, refused
        assert manifest["failed"] and "outside the pod" in manifest["error"]
    else:  # in the pod an absolute link is a pod path: the pod's own /tmp, inside the sandbox
        assert manifest["failed"] is False, manifest["error"]
        assert (pod_of(manifest, pod_env) / str(canary).lstrip("/") / "train.py").is_file()
    text = text.replace("/workspace/dest/", "/workspace/dest2/")
    manifest, _, _ = run_spec(text, project)
    assert manifest["failed"] and "outside the pod" in manifest["error"]
    untouched(canary)


def test_a_secret_written_over_a_pod_symlink_replaces_the_link(mode, pod_env, project, canary, monkeypatch):
    monkeypatch.setenv("TOKEN", "s3cret")
    text = (f"setup: [{{command: 'ln -s {canary}/precious.txt $HOME/.env'}}]\nstaging: []\n"
            "secrets:\n  - {name: t, env: [TOKEN], destination: /root/.env}\nrun: 'test ! -L $HOME/.env && "
            "grep -c TOKEN $HOME/.env'\nlifecycle: {on_success: stop}\n")
    manifest, plan, _ = run_spec(text, project)
    assert manifest["failed"] is False, manifest["error"]
    env = pod_of(manifest, pod_env) / "root" / ".env"
    assert not env.is_symlink() and "TOKEN=" in env.read_text() and oct(env.stat().st_mode & 0o777) == "0o600"
    untouched(canary)


def test_committed_symlinks_are_staged_as_symlinks(mode, pod_env, project, canary):
    (project / "data").mkdir()
    (project / "data" / "a.txt").write_text("a\n")
    (project / "data-link").symlink_to("data")
    (project / "a-link.txt").symlink_to("data/a.txt")
    (project / "outside").symlink_to(canary / "precious.txt")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "links")
    body = ("readlink /workspace/repo/data-link; readlink /workspace/repo/a-link.txt; cat /workspace/repo/a-link.txt;"
            " readlink /workspace/repo/outside")
    manifest, plan, _ = run_spec(f"run: '{body}'\nlifecycle: {{on_success: stop}}\n", project)
    assert manifest["failed"] is False, manifest["error"]
    assert (plan.run_dir / "run.log").read_text().splitlines() == ["data", "data/a.txt", "a", str(canary / "precious.txt")]
    repo = pod_of(manifest, pod_env) / "workspace" / "repo"
    assert (repo / "data-link").is_symlink() and (repo / "outside").is_symlink()
    untouched(canary)


def test_a_pulled_file_replaces_a_local_symlink_instead_of_writing_through_it(mode, pod_env, project, canary):
    (project / "results").mkdir()
    (project / "results" / "m.json").symlink_to(canary / "precious.txt")
    manifest, _, _ = run_spec("staging: []\nrun: 'mkdir -p /workspace/r && echo new > /workspace/r/m.json'\n"
                              "artifacts:\n  - {label: r, remote_path: /workspace/r/, local_path: results/}\n", project)
    assert manifest["failed"] is False, manifest["error"]
    got = project / "results" / "m.json"
    assert not got.is_symlink() and got.read_text() == "new\n"
    untouched(canary)


# ---------------------------------------------------------------- the namespace itself

@pytest.mark.skipif(sandbox.proc_args() is None, reason="bubblewrap cannot make a namespace here")
def test_the_namespace_is_read_only_outside_the_pod(pod_env, project, canary, monkeypatch):
    monkeypatch.setenv("PODMAGIC_LOCAL_SANDBOX", "namespace")
    # a client venv under /tmp (a clone there) is hidden by the pod's own /tmp: `rm -f` of it then
    # "succeeds" on nothing; the read-only host is shown by /usr/bin (below) and the venv still existing
    venv = Path(sys.executable)
    rm_venv = "" if str(venv).startswith("/tmp/") else f"rm -f {venv} 2>/dev/null && echo REMOVED-VENV; "
    body = (f"touch {project}/x 2>/dev/null && echo WROTE-PROJECT; "
            f"echo bad > {canary}/precious.txt 2>/dev/null && echo WROTE-TMP-CANARY; "
            f"{rm_venv}echo hi > /tmp/mine; cat /tmp/mine; "
            "echo hi > /root/x && echo home-ok; test -w /usr/bin && echo WRITABLE-USR; echo end")
    manifest, plan, _ = run_spec(f"staging: []\nrun: '{body}'\nlifecycle: {{on_success: stop}}\n", project)
    log = (plan.run_dir / "run.log").read_text()
    assert manifest["failed"] is False, manifest["error"]
    assert "WROTE" not in log and "REMOVED" not in log and "WRITABLE" not in log, log
    assert "home-ok" in log and log.strip().endswith("end")
    assert not (project / "x").exists() and Path(sys.executable).exists()
    box = pod_of(manifest, pod_env)
    assert (box / "tmp" / "mine").read_text() == "hi\n" and (box / "root" / "x").exists()
    untouched(canary)  # its host path is under /tmp: in the pod that is the pod's own /tmp


@pytest.mark.skipif(sandbox.proc_args() is None, reason="bubblewrap cannot make a namespace here")
def test_a_detached_run_outlives_the_client_that_started_it(pod_env, project, tmp_path, monkeypatch):
    monkeypatch.setenv("PODMAGIC_LOCAL_SANDBOX", "namespace")
    script = textwrap.dedent(f"""\
        import sys
        from podmagic.run import api
        from podmagic.backends.local import LocalBackend
        plan = api.prepare("staging: []\\nrun: 'sleep 2; echo survived > /workspace/after'\\n",
                           cwd=__import__("pathlib").Path({str(project)!r})).plan
        pod = LocalBackend().provision(plan.request, lambda *a, **k: None)
        pod.start(plan.launch)
        print(pod.sandbox)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PODMAGIC_HEARTBEAT_TIMEOUT_SEC": "0"})
    assert out.returncode == 0, out.stderr
    box = Path(out.stdout.strip().splitlines()[-1])
    import time

    deadline = time.time() + 20
    while time.time() < deadline and not (box / "workspace" / "after").exists():
        time.sleep(0.1)
    assert (box / "workspace" / "after").read_text() == "survived\n"


@pytest.mark.skipif(sandbox.bwrap() is None, reason="no bubblewrap here")
def test_the_bwrap_probe_is_remembered_while_its_key_holds(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "_probed", {})
    probes = []
    real = sandbox._probe
    monkeypatch.setattr(sandbox, "_probe", lambda exe: probes.append(exe) or real(exe))
    first = sandbox.proc_args()  # no folder given: asked, and kept in this process only
    assert len(probes) == 1 and not list(tmp_path.iterdir())
    monkeypatch.setattr(sandbox, "_probed", {})
    assert sandbox.proc_args(tmp_path) == first and len(probes) == 2
    cache = tmp_path / sandbox.CACHE_NAME
    assert json.loads(cache.read_text())["proc"] == (list(first) if first else None)
    monkeypatch.setattr(sandbox, "_probed", {})  # a new process: the file answers
    assert sandbox.proc_args(tmp_path) == first and len(probes) == 2
    key = sandbox._probe_key(sandbox.bwrap())
    monkeypatch.setattr(sandbox, "_probe_key", lambda exe: [*key[:2], key[2] + 1, *key[3:]])  # another user
    monkeypatch.setattr(sandbox, "_probed", {})
    assert sandbox.proc_args(tmp_path) == first and len(probes) == 3  # asked bubblewrap again
    cache.write_text("{not json")
    monkeypatch.setattr(sandbox, "_probed", {})
    assert sandbox.proc_args(tmp_path) == first and len(probes) == 4


def test_the_namespace_layout_is_kept_while_the_host_top_level_is_unchanged(monkeypatch, tmp_path):
    """The host's top level is listed once per change of `/`'s mtime, not once per launch."""
    from pathlib import PurePosixPath

    listed = []
    real = sandbox._layer
    monkeypatch.setattr(sandbox, "_layer", lambda *a: listed.append(a[0]) or real(*a))
    sandbox._root_layer.cache_clear()
    ns = sandbox.Namespace(str(tmp_path), "/workspace")
    first = ns.argv(["true"], cwd="/root")
    assert ns.argv(["true"], cwd="/root") == first and listed == ["/"]
    st = os.stat("/")
    monkeypatch.setattr(sandbox, "mtime_ns", lambda path: st.st_mtime_ns + 1)  # an entry added to `/`
    assert ns.argv(["true"], cwd="/root") == first and listed == ["/", "/"]
    for path in ("/tmp", "/tmp/x", "/root", "/root/.local", "/workspace/a", "/proc/1", "/dev", "/usr/bin",
                 "/tmpfoo", "/rooted", "/workspaces", "/", "/tmp/../usr"):  # as the PurePosixPath rule said
        p = PurePosixPath(path)
        covered = [PurePosixPath(c) for c in ("/proc", "/dev", "/tmp", "/root", "/workspace")]
        expected = any(p == c or c in p.parents for c in covered)
        assert ns.hidden(path) == (expected if ".." not in path else False), path


def test_forcing_a_mode_that_is_not_there_is_an_error(monkeypatch, pod_env):
    from podmagic.errors import BackendError

    monkeypatch.setenv("PODMAGIC_LOCAL_SANDBOX", "chroot")
    with pytest.raises(BackendError, match="namespace` or `mapped"):
        sandbox.mode()


# ---------------------------------------------------------------- an SSH host with --root

from sshd_fixtures import requires_sshd, sshd  # noqa: E402,F401 - fixture


def test_ssh_with_a_root_refuses_pod_paths_outside_it(project):
    for text, field in (("staging:\n  - {label: a, source: ./, destination: /srv/x}\nrun: x\n", "staging[0]"),
                        ("run: x\nartifacts:\n  - {label: a, remote_path: /workspace/../x, local_path: g}\n",
                         "artifacts[0]")):
        with pytest.raises(SpecError, match=r"^cell:\d+:\d+: error: `" + re.escape(field)):
            api.prepare(text, cwd=project, backend="ssh", backend_options={"root": "/tmp/r", "host": "h"})
    api.prepare("staging:\n  - {label: a, source: ./, destination: /srv/x}\nrun: x\n", cwd=project,
                backend="ssh", backend_options={"host": "h"})  # no root: the host's paths are the pod's


@requires_sshd
def test_ssh_pulls_pod_symlinks_as_symlinks(sshd, pod_env, project, canary, tmp_path):
    from podmagic.backends.ssh.backend import SSHBackend

    (project / "data").mkdir()
    (project / "data" / "a.txt").write_text("a\n")
    (project / "data-link").symlink_to("data")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "links")
    body = (f"mkdir -p /workspace/out && ln -s {canary}/precious.txt /workspace/out/abs && "
            "ln -s ../../.. /workspace/out/up && echo r > /workspace/out/real && readlink /workspace/repo/data-link")
    prepared = api.start(api.prepare(f"run: '{body}'\nartifacts:\n  - {{label: o, remote_path: /workspace/out/, "
                                     "local_path: \"{run_dir}/o/\", delete: true}\n", cwd=project, backend="ssh"))
    backend = SSHBackend(sshd.host_spec, root=str(tmp_path / "pod"), known_hosts=tmp_path / "kh",
                         key_path=str(sshd.client_key))
    manifest = api.execute(prepared, backend=backend)
    assert manifest["failed"] is False, manifest["error"]
    got = prepared.plan.run_dir / "o"
    assert os.readlink(got / "abs") == f"{canary}/precious.txt" and os.readlink(got / "up") == "../../.."
    assert (got / "real").read_text() == "r\n" and "data" in (prepared.plan.run_dir / "run.log").read_text()
    untouched(canary)


def test_home_paths_land_in_the_pods_home(mode, pod_env, project, monkeypatch):
    monkeypatch.setenv("TOKEN", "t0k")
    text = ("staging: []\nsecrets:\n  - {name: t, env: [TOKEN], destination: /root/.config/t.env}\n"
            "run: {body: 'cat $HOME/.config/t.env; echo ok', log_path: /root/logs/run.log, "
            "script_path: /root/bin/run.sh}\nlifecycle: {on_success: stop}\n")
    manifest, plan, _ = run_spec(text, project)
    assert manifest["failed"] is False, manifest["error"]
    home = pod_of(manifest, pod_env) / "root"
    assert (home / "logs" / "run.log").is_file() and (home / "bin" / "run.sh").is_file()
    assert "ok" in (plan.run_dir / "run.log").read_text() and "t0k" not in (plan.run_dir / "run.log").read_text()
    assert (home / ".config" / "t.env").read_text().startswith("TOKEN=")


@requires_sshd
def test_ssh_root_maps_the_pods_home_under_the_root(sshd, pod_env, project, monkeypatch, tmp_path):
    from podmagic.backends.ssh.backend import SSHBackend

    monkeypatch.setenv("TOKEN", "t0k")
    root = tmp_path / "pod"
    text = ("staging: []\nsecrets:\n  - {name: t, env: [TOKEN], destination: /root/.t.env}\n"
            "run: {body: 'test -f $HOME/.t.env && echo ok', log_path: /root/run.log}\nlifecycle: {on_success: stop}\n")
    prepared = api.start(api.prepare(text, cwd=project, backend="ssh",
                                     backend_options={"root": str(root), "host": sshd.host_spec}))
    backend = SSHBackend(sshd.host_spec, root=str(root), known_hosts=tmp_path / "kh", key_path=str(sshd.client_key))
    manifest = api.execute(prepared, backend=backend)
    assert manifest["failed"] is False, manifest["error"]
    assert (root / "root" / ".t.env").is_file() and (root / "root" / "run.log").read_text() == "ok\n"
