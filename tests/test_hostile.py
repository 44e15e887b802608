"""Hostile input (issue 7): bad specs, injection and secrets, through the real front ends.

Table-driven. The tables are module-level so their sizes are the counts the
README states (`python -c "import sys; sys.path[:0] = ['tests']; import
test_hostile as t; print(t.counts())"`):

1. `BAD_INPUTS`: each through `python -m podmagic.ui.cli run FILE` (a
   subprocess) and through `api.prepare` (what the magics call): one
   `FILE:LINE:COL: error:` line (or the flag named), exit 2, no run
   directory, no sandbox.
2. `PAYLOADS` × `INJECTION_POSITIONS` on the local and SSH backends (every
   payload in every position in one run), plus `REFUSED_INJECTIONS` (values
   that must be refused with a positioned error): the canary is never
   created and each value arrives literally.
3. Secrets (`secrets:` env values and `--secret-var` values) never appear in
   anything podmagic writes or shows, even when the body echoes them.

Runs (concurrency, interrupts) are in `test_hostile_runs.py`; template values in every quoting
context of shell text in `test_hostile_shell.py`; dropped logins and links in
`test_hostile_links.py`; a full disk in `test_hostile_disk.py`; the spec fuzzer in `test_fuzz.py`.
`counts()` adds them all up.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from podmagic.run import api, store
from podmagic.spec import schema
from podmagic.run.events import read_events
from podmagic.spec.jobspec import SpecError, decode

from helpers import Recorder
from sshd_fixtures import requires_sshd

pytestmark = pytest.mark.e2e  # real backends end to end: not in the fast lane (-m "not e2e")

REPO = Path(__file__).resolve().parent.parent

# ============================================================== 1. bad input


@dataclass(frozen=True)
class Bad:
    id: str
    text: str | bytes
    fragment: str
    """Expected inside the error message."""
    at: str | tuple[int, int] | None = None
    """Where the error points (file lines): the first occurrence of this text, or (line, col)."""
    flags: tuple[str, ...] = ()
    layout: str = "project"
    """project: the config sits in a project; home: in $HOME/proj; homefile: directly in $HOME."""

    def position(self) -> tuple[int, int] | None:
        if isinstance(self.at, tuple):
            return self.at
        if self.at is None:
            return None
        text = self.text.decode("utf-8", "replace") if isinstance(self.text, bytes) else self.text
        before = text[: text.index(self.at)]
        return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


def _bomb(levels: int = 9, width: int = 9) -> str:
    rows = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        rows.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(rows) + "\nrun: x\n"


def _unknown_keys() -> list[Bad]:
    """An unknown key at every level of the schema."""
    out = [Bad("unknown-key-top", "run: x\nzzq_unknown: 1\n", "unknown key `zzq_unknown`", "zzq_unknown")]
    for section, kind in schema.ROOT.items():
        if kind == "section":
            text = f"{section}: {{zzq_unknown: 1}}\nrun: x\n"
        elif kind == "list[section]":
            text = f"run: x\n{section}:\n  - {{zzq_unknown: 1}}\n"
        elif kind == "run":
            text = "run:\n  body: x\n  zzq_unknown: 1\n"
        else:
            continue
        out.append(Bad(f"unknown-key-{section}", text, "unknown key `zzq_unknown`", "zzq_unknown"))
    return out


BAD_INPUTS: list[Bad] = [
    # -- YAML itself
    Bad("syntax-unclosed", "run: [unclosed\n", "invalid YAML", (2, 1)),
    Bad("syntax-colons", "name: a: b\nrun: x\n", "invalid YAML", ": b"),
    Bad("tabs", "pod:\n\timage: x\nrun: x\n", "not tabs", (2, 1)),
    Bad("duplicate-top", "run: x\nname: a\nname: b\n", "duplicate key `name`", "name: b"),
    Bad("duplicate-nested", "run: x\nartifacts:\n  - {label: a, label: b, remote_path: /x, local_path: y}\n",
        "duplicate key `artifacts[0].label`", "label: b"),
    Bad("multi-document", "run: x\n---\nrun: y\n", "another document", "---"),
    Bad("unknown-tag", "run: !foo bar\n", "remove the tag", "!foo"),
    Bad("bad-tagged-int", "pod: {gpu_count: !!int abc}\nrun: x\n", "remove the tag", "!!int"),
    Bad("bad-tagged-timestamp", "name: !!timestamp nope\nrun: x\n", "remove the tag", "!!timestamp"),
    Bad("merge-key", "base: &b {image: x}\npod: {<<: *b}\nrun: x\n", "merge keys", "<<"),
    Bad("alias-bomb", _bomb(), "anchor/alias bomb", None),
    Bad("deep-nesting", "run: x\nx: " + "[" * 5000 + "]" * 5000 + "\n", "nests deeper", None),
    Bad("nul-byte", "run: echo \x00 hi\n", "unacceptable character #x0000", "\x00"),
    Bad("control-char", "name: bell\x07\nrun: x\n", "unacceptable character #x0007", "\x07"),
    Bad("non-utf8-value", b"run: |\n  echo caf\xe9\n", "not valid UTF-8", (2, 11)),
    Bad("non-utf8-key", b"na\xffme: x\nrun: x\n", "not valid UTF-8", (1, 3)),
    Bad("very-large-comments", "run: x\n" + "# filler\n" * 70_000, "larger than", (1, 1)),
    Bad("very-large-scalar", 'run: "' + "a" * 600_000 + '"\n', "larger than", (1, 1)),
    Bad("non-string-key", "? [a, b]\n: c\nrun: x\n", "keys must be plain names", "[a, b]"),
    Bad("top-level-scalar", "just some text\n", "must be a mapping", (1, 1)),
    # -- empty
    Bad("empty", "", "the spec is empty", (1, 1)),
    Bad("whitespace-only", "   \n\n  \n", "the spec is empty", (1, 1)),
    Bad("comments-only", "# a comment\n\n# another\n", "the spec is empty", (1, 1)),
    Bad("run-null", "name: x\nrun:\n", "`run` is required", (1, 1)),
    # -- types
    Bad("python-version-float", "pod:\n  python_version: 3.13\nrun: x\n", 'quote it: "3.13"', "3.13"),
    Bad("python-version-int", "pod: {python_version: 3}\nrun: x\n", 'quote it: "3"', "3}"),
    Bad("python-version-newline", 'pod: {python_version: "3.13\\n"}\nrun: x\n', "must look like", '"3.13'),
    Bad("budget-nan", "budget: {cost_cap_usd: .nan}\nrun: x\n", "finite number", ".nan"),
    Bad("budget-inf", "budget: {max_runtime_minutes: 5, assumed_hourly_rate_usd: .inf}\nrun: x\n",
        "finite number", ".inf"),
    Bad("run-number", "run: 3.5\n", 'quote it: "3.5"', "3.5"),
    *_unknown_keys(),
    # -- flags
    Bad("var-no-equals", "run: x\n", "--var expects NAME=VALUE", flags=("--var", "seed")),
    Bad("var-bad-name", "run: x\n", "--var expects NAME=VALUE", flags=("--var", "9seed=1")),
    Bad("var-empty-name", "run: x\n", "--var expects NAME=VALUE", flags=("--var", "=1")),
    Bad("var-space-name", "run: x\n", "--var expects NAME=VALUE", flags=("--var", "a b=1")),
    Bad("var-newline-name", "run: x\n", "--var expects NAME=VALUE", flags=("--var", "a\n=1")),
    Bad("secret-var-no-equals", "run: x\n", "--secret-var expects NAME=VALUE", flags=("--secret-var", "tok")),
    # -- templates
    Bad("unknown-var-body", "run: |\n  python train.py --seed {seed}\n", "unknown template variable {seed}",
        "{seed}"),
    Bad("unknown-var-typo", "variables: {seed: '1'}\nname: t-{sed}\nrun: x\n", "did you mean {seed}", "{sed}"),
    Bad("unknown-var-in-var-flag", "run: echo {v}\n", "unknown template variable {nope}", None,
        flags=("--var", "v={nope}")),
    Bad("bash-braces-body", "run: |\n  echo ${HOME}\n", "${{HOME}}", "{HOME}"),
    Bad("bash-braces-setup", "setup:\n  - command: echo ${PATH}\nrun: x\n", "${{PATH}}", "{PATH}"),
    Bad("variables-loop", "variables: {a: '{b}', b: '{a}'}\nrun: echo {a}\n", "loop", None),
    # -- paths
    Bad("artifact-parent", "run: x\nartifacts:\n  - {label: a, remote_path: /x, local_path: ../outside/}\n",
        "outside the project", "../outside/"),
    Bad("artifact-absolute", "run: x\nartifacts:\n  - {label: a, remote_path: /x, local_path: /tmp/elsewhere}\n",
        "outside the project", "/tmp/elsewhere"),
    Bad("artifact-home", "run: x\nartifacts:\n  - {label: a, remote_path: /x, local_path: ~/x}\n",
        "outside the project", "~/x"),
    Bad("artifact-run-dir-dotdot",
        "run: x\nartifacts:\n  - {label: a, remote_path: /x, local_path: '{run_dir}/../../../../x'}\n",
        "outside the project", "'{run_dir}"),
    Bad("project-root-tilde", "local: {project_root: '~'}\nrun: x\n", "your home directory", "'~'"),
    Bad("project-root-parent-is-home", "local: {project_root: '..'}\nrun: x\n", "your home directory", "'..'",
        layout="home"),
    Bad("project-root-slash", "local: {project_root: /}\nrun: x\n", "the filesystem root", "/}"),
    Bad("project-root-dotdots", "local: {project_root: '" + "../" * 40 + "'}\nrun: x\n", "the filesystem root",
        "'../"),
    Bad("config-in-home", "run: x\n", "your home directory", (1, 1), layout="homefile"),
]


def _layout(base: Path, case: Bad) -> tuple[Path, Path, dict[str, str]]:
    """(config file, working dir, env) for one case, each in its own tree."""
    home = base / "home"
    project = home / "proj"
    project.mkdir(parents=True)
    config = (home if case.layout == "homefile" else project) / "job.yaml"
    data = case.text if isinstance(case.text, bytes) else case.text.encode("utf-8")
    config.write_bytes(data)
    env = {"HOME": str(home), "PODMAGIC_LOCAL_ROOT": str(base / "pods")}
    return config, config.parent, env


def _cli(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("PODMAGIC_BACKEND", "RUNPOD_API_KEY")}
    return subprocess.run([sys.executable, "-m", "podmagic.ui.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**full, **env}, timeout=timeout)


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Every bad input through `podmagic run FILE`, two at a time."""
    bases = {case.id: tmp_path_factory.mktemp(case.id) for case in BAD_INPUTS}  # mktemp is not thread-safe

    def one(case: Bad):
        base = bases[case.id]
        config, cwd, env = _layout(base, case)
        return case.id, (_cli(["run", config.name, *case.flags], cwd, env), base)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, BAD_INPUTS))


def _nothing_started(base: Path) -> None:
    assert not [p for p in base.rglob("artifacts") if p.is_dir()], "a run directory was created"
    assert not (base / "pods").exists(), "a sandbox (pod) was created"


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda c: c.id)
def test_bad_input_through_the_cli(case, cli_results):
    res, base = cli_results[case.id]
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr[-2000:]  # one line, no traceback
    if case.flags:
        flag = case.flags[0]
        assert lines[0].startswith(f"{flag}: error: ") and case.fragment in lines[0]
    else:
        m = re.match(r"^job\.yaml:(\d+):(\d+): error: (.+)$", lines[0])
        assert m, lines[0]
        assert case.fragment in m.group(3), lines[0]
        pos = case.position()
        if pos is not None:
            assert (int(m.group(1)), int(m.group(2))) == pos, lines[0]
    assert res.stdout == ""
    _nothing_started(base)


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda c: c.id)
def test_bad_input_through_the_api(case, tmp_path, monkeypatch):
    """What `%%pod` calls: the cell's lines count from the magic line (line_offset=1)."""
    config, cwd, env = _layout(tmp_path, case)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SpecError) as info:
        data = config.read_bytes()
        text = decode(data, line_offset=1)
        api.prepare(text, cwd=cwd, line_offset=1,
                    variables=api.parse_assignments([v for f, v in zip(case.flags[::2], case.flags[1::2])
                                                     if f == "--var"], "--var"),
                    secret_variables=api.parse_assignments([v for f, v in zip(case.flags[::2], case.flags[1::2])
                                                            if f == "--secret-var"], "--secret-var"))
    err = str(info.value)
    assert "\n" not in err and case.fragment in err, err
    if not case.flags:
        assert err.startswith("cell:"), err
        pos = case.position()
        if pos == (1, 1):  # a whole-spec error: the %%pod line or the first line of the body
            assert (info.value.line, info.value.col) in ((1, 1), (2, 1)), err
        elif pos is not None:
            assert (info.value.line, info.value.col) == (pos[0] + 1, pos[1]), err
    _nothing_started(tmp_path)


# ============================================================== 2. injection

CANARY_NAME = "CANARY"
# `{C}` is the canary's absolute path. Braces in a payload are escaped where it is written into the YAML.
PAYLOADS: list[tuple[str, str]] = [
    ("quote-break", "x'; rm -rf ~/keep; touch {C}; echo '"),
    ("dollar-paren", "$(touch {C})"),
    ("backticks", "`touch {C}`"),
    ("semicolon", "; touch {C}"),
    ("newline", "a\ntouch {C}\nb"),
    ("double-quote-break", '" && touch {C} && echo "'),
    ("pipe-comment", "| touch {C} #"),
    ("ifs-braces", "${IFS}touch${IFS}{C}"),
    ("dash-help", "--help"),
    ("glob-and-tilde", "~/* ?"),
]
INJECTION_POSITIONS = (
    "name", "--var (used in remote_env.exports)", "remote_env.exports", "remote_env.source_files",
    "setup/preflight with_env", "staging.source", "staging.destination", "staging.excludes",
    "secrets.destination", "run.script_path", "run.log_path", "run.success_marker", "run.failure_markers",
    "artifacts.remote_path", "run.body '{v}'", "run.body \"{v}\"",
)
REFUSED_INJECTIONS: list[tuple[str, str, str]] = [
    # (id, cell, fragment) — `{P}` is replaced by a JSON-quoted payload
    ("python_version", "pod: {python_version: {P}}\nrun: x\n", "must look like"),
    ("exports-key", "remote_env: {exports: {{P}: v}}\nrun: x\n", "valid environment variable name"),
    ("secret-env-name", "secrets: [{name: s, destination: /x, env: [{P}]}]\nrun: x\n", "not a valid environment"),
    ("secret-mode", "secrets: [{name: s, destination: /x, env: [A], mode: {P}}]\nrun: x\n", "octal"),
    ("variable-name", "variables: {{P}: v}\nrun: x\n", "must be an identifier"),
]
REFUSED_FLAG_INJECTIONS = ("--var", "--secret-var")
CLI_VAR_INJECTIONS = 5


def _payload(template: str, canary: Path) -> str:
    return template.replace("{C}", str(canary))


def _esc(text: str) -> str:
    """A literal value inside a template-rendered YAML string."""
    return text.replace("{", "{{").replace("}", "}}")


def _y(text: str) -> str:
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def _safe(text: str) -> str:
    return text.replace("/", "_")


def injection_spec(payload: str, src: str) -> str:
    p = _esc(payload)
    return f"""name: {_y(p)}
remote_env:
  exports: {{V: "{{v}}", W: {_y(p)}}}
  source_files: [{_y('/workspace/env-' + p)}]
setup:
  - {{command: 'printf "%s" "$V" > /workspace/v.txt && printf "%s" "$W" > /workspace/w.txt', with_env: true}}
preflight:
  - {{command: 'test "$V" = "$W"', with_env: true}}
staging:
  - {{label: s, source: {_y(_esc(src) + '/')}, destination: {_y('/workspace/d-' + p + '/')},
      excludes: [{_y(_safe(p) + '.skip')}]}}
secrets:
  - {{name: s, env: [HOSTILE_SECRET], destination: {_y('/workspace/sec-' + p)}}}
run:
  body: |
    cat /workspace/v.txt; echo
    printf '%s\\n' '{{v}}'
    printf '%s\\n' "{{v}}"
    echo end
  script_path: {_y('/workspace/s-' + p + '.sh')}
  log_path: {_y('/workspace/l-' + p + '.log')}
  success_marker: {_y(p)}
  failure_markers: [{_y('NEVER ' + p)}]
artifacts:
  - {{label: a, remote_path: {_y('/workspace/d-' + p + '/f.txt')}, local_path: "{{run_dir}}/got.txt"}}
lifecycle: {{on_success: preserve, on_failure: preserve}}
"""


def _injection_project(root: Path, payload: str) -> tuple[Path, str]:
    root.mkdir(parents=True)
    src = "src-" + _safe(payload)
    (root / src).mkdir()
    (root / src / "f.txt").write_text("staged\n")
    (root / src / (_safe(payload) + ".skip")).write_text("must not be staged\n")
    return root, src


def _run_injection(tmp_path: Path, payload: str, backend: str, ssh_server=None):
    project, src = _injection_project(tmp_path / "proj", payload)
    rec = Recorder()
    prepared = api.start(api.prepare(injection_spec(payload, src), cwd=project, backend=backend,
                                     variables=[("v", _esc(payload))]))
    if backend == "ssh":
        from podmagic.backends.ssh.backend import SSHBackend

        pod_root = tmp_path / "pod"
        be = SSHBackend(ssh_server.host_spec, root=str(pod_root), known_hosts=tmp_path / "kh",
                        key_path=str(ssh_server.client_key))
    else:
        be, pod_root = None, None
    manifest = api.execute(prepared, listeners=[rec], backend=be)
    if backend == "local":
        pod_root = Path(os.environ["PODMAGIC_LOCAL_ROOT"]) / "pods" / manifest["pod_id"]
    return manifest, prepared.plan, rec, pod_root


@pytest.fixture
def hostile_env(pod_env, monkeypatch):
    monkeypatch.setenv("HOSTILE_SECRET", "hostile-secret-value")
    return pod_env


def _check_injection(tmp_path, payload, manifest, plan, pod_root):
    canary = tmp_path / CANARY_NAME
    assert not canary.exists(), "the canary was created: a value escaped its quoting"
    journal = [(e["event"], e.get("phase"), e.get("label")) for e in read_events(plan.run_dir / "events.jsonl")]
    assert manifest["failed"] is False, (manifest["error"], journal)
    assert manifest["job_name"] == payload
    assert store.RUN_ID_RE.match(plan.run_id)
    log = (plan.run_dir / "run.log").read_text()
    # the value arrived literally: via --var → export → file → body, and pasted into '…' and "…" in the body
    assert log == (payload + "\n") * 3 + "end\n"
    w = pod_root / "workspace"
    assert (w / "v.txt").read_text() == payload and (w / "w.txt").read_text() == payload
    dest = Path(str(w) + "/d-" + payload)
    assert (dest / "f.txt").read_text() == "staged\n"
    assert not (dest / (_safe(payload) + ".skip")).exists(), "the exclude did not apply"
    secret = Path(str(w) + "/sec-" + payload)
    assert secret.read_text() == "HOSTILE_SECRET=hostile-secret-value\n"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert Path(str(w) + "/s-" + payload + ".sh").is_file()
    assert Path(str(w) + "/l-" + payload + ".log").read_text() == log
    assert (plan.run_dir / "got.txt").read_text() == "staged\n"
    assert manifest["artifacts"][0]["status"] == "success"


@pytest.mark.parametrize("pid,template", PAYLOADS, ids=[p[0] for p in PAYLOADS])
def test_injection_local(pid, template, hostile_env, tmp_path):
    payload = _payload(template, tmp_path / CANARY_NAME)
    manifest, plan, _rec, pod_root = _run_injection(tmp_path, payload, "local")
    _check_injection(tmp_path, payload, manifest, plan, pod_root)


@pytest.fixture(scope="module")
def module_sshd(tmp_path_factory, python_mirror, uv_python_dir):
    """One sshd for the module; its "image" has uv on PATH and the offline Python mirror (for the pin)."""
    from uv import find_uv_bin

    from podmagic.testing.sshd import SSHServer

    env = {"UV_PYTHON_DOWNLOADS_JSON_URL": python_mirror, "UV_PYTHON_INSTALL_DIR": str(uv_python_dir),
           "PATH": f"{Path(find_uv_bin()).parent}:/usr/local/bin:/usr/bin:/bin"}
    with SSHServer(tmp_path_factory.mktemp("sshd"), env=env, home=tmp_path_factory.mktemp("sshd-home")) as server:
        yield server


RUNPOD_POD = """pod:
  image: runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04
  datacenters: [EU-RO-1]
  gpu_order: ["NVIDIA A100 80GB PCIe"]
"""


@pytest.fixture
def sim(tmp_path, monkeypatch, python_mirror, uv_python_dir):
    """The RunPod simulator (its pods are real sshd hosts), as tests/test_runpod_runs.py runs it."""
    from uv import find_uv_bin

    from podmagic.testing.sim.runpod import RunPodSimulator, Timing

    image_env = {"UV_PYTHON_DOWNLOADS_JSON_URL": python_mirror, "UV_PYTHON_INSTALL_DIR": str(uv_python_dir),
                 "PATH": f"{Path(find_uv_bin()).parent}:/usr/local/bin:/usr/bin:/bin"}
    simulator = RunPodSimulator(tmp_path / "sim", timing=Timing(0.2, 0.1, 0.0), image_env=image_env).start()
    monkeypatch.setenv("RUNPOD_API_BASE_URL", simulator.base_url)
    monkeypatch.setenv("RUNPOD_API_KEY", simulator.api_key)
    yield simulator
    simulator.stop()


@requires_sshd
@pytest.mark.parametrize("pid,template", PAYLOADS, ids=[p[0] for p in PAYLOADS])
def test_injection_ssh(pid, template, hostile_env, tmp_path, module_sshd):
    payload = _payload(template, tmp_path / CANARY_NAME)
    manifest, plan, _rec, pod_root = _run_injection(tmp_path, payload, "ssh", module_sshd)
    assert manifest["backend"] == "ssh"
    _check_injection(tmp_path, payload, manifest, plan, pod_root)


@pytest.mark.parametrize("rid,cell,fragment", REFUSED_INJECTIONS, ids=[r[0] for r in REFUSED_INJECTIONS])
@pytest.mark.parametrize("pid,template", PAYLOADS, ids=[p[0] for p in PAYLOADS])
def test_injection_refused_with_a_position(rid, cell, fragment, pid, template, tmp_path):
    payload = _payload(template, tmp_path / CANARY_NAME)
    text = cell.replace("{P}", _y(_esc(payload)))
    with pytest.raises(SpecError) as info:
        api.prepare(text, cwd=tmp_path, line_offset=1)
    assert fragment in info.value.message and str(info.value).startswith("cell:")
    assert "\n" not in str(info.value)
    assert info.value.line == 2  # the payload's line (after the %%pod line)
    assert not (tmp_path / CANARY_NAME).exists()


@pytest.mark.parametrize("flag", REFUSED_FLAG_INJECTIONS)
@pytest.mark.parametrize("pid,template", PAYLOADS, ids=[p[0] for p in PAYLOADS])
def test_injection_in_flag_names_is_refused(flag, pid, template, tmp_path):
    payload = _payload(template, tmp_path / CANARY_NAME)
    with pytest.raises(SpecError) as info:
        api.parse_assignments([f"{payload}=1"], flag)
    assert str(info.value).startswith(f"{flag}: error: {flag} expects NAME=VALUE")


@pytest.mark.parametrize("pid,template", PAYLOADS[:CLI_VAR_INJECTIONS],
                         ids=[p[0] for p in PAYLOADS[:CLI_VAR_INJECTIONS]])
def test_injection_through_the_cli_var(pid, template, hostile_env, project):
    """`podmagic run FILE --var v=PAYLOAD` as a subprocess: the value reaches the pod literally."""
    canary = project.parent / CANARY_NAME
    payload = _payload(template, canary)
    (project / "job.yaml").write_text(
        "staging: []\nremote_env: {exports: {V: '{v}'}}\n"
        "setup: [{command: 'printf \"%s\" \"$V\" > /workspace/v.txt', with_env: true}]\n"
        "run: cat /workspace/v.txt\nlifecycle: {on_success: preserve}\n")
    res = _cli(["run", "job.yaml", "--var", f"v={_esc(payload)}"], project, {})
    assert res.returncode == 0, res.stderr
    assert res.stdout == payload and not canary.exists()


# ============================================================== 3. secrets

ENV_SECRET = "hf_ENV-secret with 'quote' and space"
VAR_SECRET = "tok-VAR-secret-7f3a9"
MULTILINE_SECRET = "-----BEGIN KEY-----\nmulti-one-9c1e\nmulti-two-9c1e\n-----END KEY-----"
FILE_SECRET = "file-secret-line-5b2e"
SECRETS = (ENV_SECRET, VAR_SECRET, MULTILINE_SECRET, FILE_SECRET)
SECRET_PIECES = ("hf_ENV", "secret-7f3a9", "'quote'", "multi-one-9c1e", "multi-two-9c1e", "secret-line-5b2e")
SECRET_SPEC = """name: sec
staging: []
secrets:
  - {name: hf, env: [HF_TOKEN], destination: /workspace/secrets/env}
  - {name: key, env: [PEM_KEY], destination: /workspace/secrets/key, mode: "0400"}
  - {name: file, file: "{project_root}/../secret.txt", destination: /workspace/secrets/file}
setup:
  - command: echo "setup sees {tok}"
run: |
  set -x
  echo "body echoes {tok}"
  cat /workspace/secrets/env
  . /workspace/secrets/env && echo "env is $HF_TOKEN"
  cat /workspace/secrets/key; . /workspace/secrets/key && printf '%s\\n' "$PEM_KEY"
  cat /workspace/secrets/file
  { set +x; } 2>/dev/null
  printf 'split tok-VAR-'; sleep 0.4; printf 'secret-%sf3a9 across chunks\\n' 7
  exit {code}
artifacts:
  - {label: opt, remote_path: "/workspace/nothing-{tok}", local_path: "{run_dir}/x", required: false}
lifecycle: {on_success: delete, on_failure: stop}
"""
SETUP_FAILS = SECRET_SPEC.replace('echo "setup sees {tok}"', 'echo "setup fails with {tok}"; exit 3')
SECRET_SURFACES = ("run.log", "phases.log", "events.jsonl", "manifest", "spec.yaml", "plan.txt", "status.json",
                   "pod.json", "launch.json", "file names", "listener events", "error message", "CLI stdout",
                   "CLI stderr", "dry-run", "notebook JSON (outputs + widget state)")
LEAKS: list[str] = []
"""Every leak any test here found (the README's `secrets leaked`: must stay 0)."""


def _leaks(where: str, text: str) -> list[str]:
    found = [f"{where}: {s!r}" for s in SECRETS if s in text]
    # the pieces a partial masking would leave
    found += [f"{where}: piece {p!r}" for p in SECRET_PIECES if p in text]
    LEAKS.extend(found)
    return found


def _scan_tree(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        found += _leaks(f"path {path.relative_to(root)}", str(path.relative_to(root)))
        if path.is_file():
            found += _leaks(str(path.relative_to(root)), path.read_text(encoding="utf-8", errors="replace"))
    return found


@pytest.fixture
def secret_env(hostile_env, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", ENV_SECRET)
    monkeypatch.setenv("PEM_KEY", MULTILINE_SECRET)
    (hostile_env.parent / "secret.txt").write_text("# a comment line\n" + FILE_SECRET + "\n")
    return hostile_env


def _secret_run(tmp_path, project, text, backend, ssh_server=None):
    rec = Recorder()
    prepared = api.start(api.prepare(text, cwd=project, backend=backend, secret_variables=[("tok", VAR_SECRET)]))
    be = None
    if backend == "ssh":
        from podmagic.backends.ssh.backend import SSHBackend

        be = SSHBackend(ssh_server.host_spec, root=str(tmp_path / "pod"), known_hosts=tmp_path / "kh",
                        key_path=str(ssh_server.client_key))
    elif backend == "runpod":
        from podmagic.backends.runpod.backend import RunPodBackend

        be = RunPodBackend(key_path=str(ssh_server.client_key), poll=(0.05, 0.2), retry_delays=(0.05,) * 4)
    manifest = api.execute(prepared, listeners=[rec], backend=be)
    return manifest, prepared.plan, rec


def _events_text(rec: Recorder) -> str:
    return "\n".join(json.dumps({"kind": e.kind, **e.data}, default=str) for e in rec.events)


SECRET_CASES = [pytest.param(b, c, id=f"{b}-{c}", marks=[requires_sshd] if b == "ssh" else [])
                for b in ("local", "ssh") for c in ("body-echoes", "body-fails", "setup-fails")]
SECRET_CASES += [pytest.param("runpod", "body-echoes", id="runpod-body-echoes")]


@pytest.mark.parametrize("backend,case", SECRET_CASES)
def test_secrets_never_leave_masked(case, backend, secret_env, project, tmp_path, request):
    text = {"body-echoes": SECRET_SPEC.replace("{code}", "0"), "body-fails": SECRET_SPEC.replace("{code}", "4"),
            "setup-fails": SETUP_FAILS.replace("{code}", "0")}[case]
    if backend == "runpod":
        text = RUNPOD_POD + text
    server = request.getfixturevalue({"ssh": "module_sshd", "runpod": "sim"}[backend]) if backend != "local" \
        else None
    manifest, plan, rec = _secret_run(tmp_path, project, text, backend, server)
    assert manifest["failed"] is (case != "body-echoes"), manifest["error"]
    assert _scan_tree(store.runs_root(project)) == []
    assert _leaks("listener events", _events_text(rec)) == []
    assert _leaks("error", str(manifest["error"])) == []
    if case == "setup-fails":
        assert "setup fails with ***" in (plan.run_dir / "phases.log").read_text()
        assert "setup fails with ***" in manifest["error"]
    else:
        log = (plan.run_dir / "run.log").read_text()
        assert "body echoes ***" in log and "HF_TOKEN=***" in log and "env is ***" in log
        assert "split *** across chunks" in log and "-----BEGIN KEY-----" not in log
        assert "+ echo 'env is ***'" in log  # set -x printed it as 'hf_ENV-secret with '\''quote'\'' and space'
    assert manifest["variables"]["tok"] == "***"


def test_secrets_never_leave_through_the_cli(secret_env, project):
    (project / "job.yaml").write_text(SECRET_SPEC.replace("{code}", "0"))
    dry = _cli(["run", "job.yaml", "--dry-run", "--secret-var", f"tok={VAR_SECRET}"], project, {})
    assert dry.returncode == 0 and "echo \"body echoes ***\"" in dry.stdout
    assert _leaks("dry-run", dry.stdout + dry.stderr) == []
    res = _cli(["run", "job.yaml", "--secret-var", f"tok={VAR_SECRET}"], project, {})
    assert res.returncode == 0, res.stderr
    assert "body echoes ***" in res.stdout
    assert _leaks("CLI stdout", res.stdout) == [] and _leaks("CLI stderr", res.stderr) == []
    (project / "bad.yaml").write_text("run: x\nartifacts:\n  - {label: a, remote_path: /x, local_path: '/tmp/{tok}'}\n")
    bad = _cli(["run", "bad.yaml", "--secret-var", f"tok={VAR_SECRET}"], project, {})
    assert bad.returncode == 2 and "/tmp/***" in bad.stderr and _leaks("CLI error", bad.stderr) == []
    (project / "named.yaml").write_text("name: job-{tok}\nrun: x\n")
    named = _cli(["run", "named.yaml", "--secret-var", f"tok={VAR_SECRET}"], project, {})
    assert named.returncode == 2 and "named.yaml:1:7: error: `name` uses a --secret-var" in named.stderr
    assert _scan_tree(store.runs_root(project)) == []


NOTEBOOK_BAD_CELLS = (
    "%%pod\npod:\n\timage: x\nrun: x\n",
    "%%pod --secret-var tok=$TOK\nname: n-{tok}\nrun: x\n",
    "%%pod\nrun: !foo x\n",
    "%%pod\nx: " + "[" * 3000 + "]" * 3000 + "\nrun: x\n",
    "%%pod --var 9x=1\nrun: x\n",
)


def test_secrets_never_reach_the_notebook(secret_env, project, monkeypatch):
    """Outputs, widget state and the saved .ipynb: the run view only ever sees masked events."""
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    monkeypatch.setenv("PODMAGIC_TEST_TOK", VAR_SECRET)
    body = SECRET_SPEC.replace("{code}", "0")
    nb = new_notebook(cells=[
        new_code_cell("%load_ext podmagic\nimport os\nTOK = os.environ['PODMAGIC_TEST_TOK']"),
        new_code_cell("%%pod --dry-run --secret-var tok=$TOK\n" + body),
        new_code_cell("%%pod --secret-var tok=$TOK\n" + body),
        new_code_cell("%%pod --secret-var tok=$TOK\n" + SECRET_SPEC.replace("{code}", "4")),
        new_code_cell("%%pod --secret-var tok=$TOK\n" + SETUP_FAILS.replace("{code}", "0")),
        *[new_code_cell(cell) for cell in NOTEBOOK_BAD_CELLS],
        new_code_cell("from podmagic import store\nfrom pathlib import Path\n"
                      "rid = sorted(store.iter_run_dirs(Path('.')), key=lambda p: p.name)[0].name\n"
                      "%pod logs $rid"),
    ])
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True, store_widget_state=True,
                   resources={"metadata": {"path": str(project)}}).execute()
    saved = nbformat.writes(nb)
    state = json.dumps(nb.metadata.get("widgets", {}))
    assert "podmagic" in state or "HTMLModel" in state, "no widget state was saved"
    assert "body echoes ***" in saved and "setup fails with ***" in saved
    assert _leaks("notebook JSON", saved) == []
    for cell in nb.cells[5:5 + len(NOTEBOOK_BAD_CELLS)]:
        text = "".join(o.get("text", "") for o in cell.outputs).strip()
        assert text.startswith("UsageError: ") and "\n" not in text and "error:" in text, text
        assert "Traceback" not in json.dumps(cell.outputs)
    assert len(list(store.iter_run_dirs(project))) == 3  # the three runs; the dry run and bad cells made none
    assert _scan_tree(store.runs_root(project)) == []


@pytest.mark.parametrize("item", [VAR_SECRET, f"tok:{VAR_SECRET}", f"9tok={VAR_SECRET}"],
                         ids=["name-forgotten", "colon-typo", "bad-name"])
def test_a_mistyped_secret_var_does_not_echo_the_secret(item):
    """`--secret-var` with a typo must not print its value in the error (nor in the CLI's stderr)."""
    with pytest.raises(SpecError) as info:
        api.parse_assignments([item], "--secret-var")
    assert VAR_SECRET not in str(info.value)


def test_no_secret_leaked_anywhere():
    """The README's `secrets leaked` count (run last in this module)."""
    assert LEAKS == []


# ============================================================== counts


def counts() -> dict[str, int]:
    """The numbers the README states (`runs_lost` and `secrets_leaked` are asserted 0 by the last tests)."""
    import test_fuzz as fuzz
    import test_hostile_disk as disk
    import test_hostile_links as links
    import test_hostile_runs as runs
    import test_hostile_shell as shell

    return {
        "bad_input_cases": len(BAD_INPUTS),
        "bad_inputs_tried": len(BAD_INPUTS) * 2,  # each through the CLI (subprocess) and through api.prepare
        "injection_payloads": len(PAYLOADS),
        "injection_positions": len(INJECTION_POSITIONS),
        "injections_tried": (len(PAYLOADS) * len(INJECTION_POSITIONS) * 2  # local + ssh, every position per run
                             + len(PAYLOADS) * (len(REFUSED_INJECTIONS) + len(REFUSED_FLAG_INJECTIONS))
                             + CLI_VAR_INJECTIONS
                             + len(runs.POD_ROOTS) * 2),  # hostile pod roots, local + ssh
        "secret_runs": len(SECRET_CASES) + 1 + 3,  # + the CLI run + the notebook's three runs
        "secret_surfaces_checked": len(SECRET_SURFACES),
        "secrets_leaked": len(LEAKS),
        "concurrent_runs": runs.CONCURRENT_RUNS * 2,
        "interrupt_cases": len(runs.CASES),
        "runs_started": (len(PAYLOADS) * 2 + CLI_VAR_INJECTIONS + len(SECRET_CASES) + 1 + 3
                         + runs.CONCURRENT_RUNS * 2 + len(runs.CASES) + len(runs.POD_ROOTS) * 2
                         + shell.counts()["shell_runs"] + 1 + 4),  # + the links run + the full-disk runs
        **shell.counts(), **links.counts(), **disk.counts(),
        "fuzz_cases": fuzz.CASES,
        "fuzz_crash_signatures": len(fuzz.CRASHES),
        # every run checks its own manifest; test_no_run_was_lost re-checks the runs module's ledger
        "runs_lost": len([d for d in runs.STARTED if store.read_json(d / store.MANIFEST) is None]),
    }
