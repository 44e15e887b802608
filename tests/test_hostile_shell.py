"""Hostile input (issue 12): template values in shell text reach bash as data, never as code.

Every payload of `test_hostile.PAYLOADS` (plus the issue's own) is passed as `--var v=PAYLOAD`
into every quoting context of `SHELL_CONTEXTS` (one real run per payload and backend, every
context in the same body, each writing what it received to its own file) on the local and SSH
backends: the canary is never created and each context receives the value literally. In the
contexts of `REFUSED_CONTEXTS` bash has no way to take a value as data: a value that is not plain
words is refused with its position (and a plain one is accepted).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from podmagic.run import api
from podmagic.spec import template
from podmagic.spec.jobspec import SpecError

from helpers import Recorder
from sshd_fixtures import requires_sshd
from test_hostile import CANARY_NAME, PAYLOADS, _cli, _esc, _payload, hostile_env, module_sshd  # noqa: F401

pytestmark = pytest.mark.e2e  # real runs, CLI subprocesses or kernels: not in the fast lane (-m "not e2e")

SHELL_PAYLOADS = PAYLOADS + [
    ("ansi-c-break", "x' ; touch {C} ; echo $'"),
    ("heredoc-end", "x\nEOF\ntouch {C}\ncat <<EOF"),
    ("arith-subscript", "a[$(touch {C})]"),
    ("backslashes", "\\' \\\" \\$(touch {C}) \\`touch {C}\\` \\\\n"),
    ("comment-newline", "# x\ntouch {C}"),
    ("unicode", "naïve – “quoted” $'\\x41' {C}"),
]
# (id, shell text writing what it received to {O}, what it must receive: `{p}` is the payload)
SHELL_CONTEXTS: list[tuple[str, str, str]] = [
    ("unquoted", "printf '%s\\n' {v} > {O}", "{p}\n"),
    ("heredoc-text-around", "cat > {O} <<END\nit's \"{v}\" 'x' \\`\nEND", "it's \"{p}\" 'x' `\n"),  # before any `...`: tree-sitter-bash misreads \` in a heredoc after one
    ("double-quotes", "printf '%s\\n' \"{v}\" > {O}", "{p}\n"),
    ("single-quotes", "printf '%s\\n' '{v}' > {O}", "{p}\n"),
    ("single-quotes-inside", "printf '%s\\n' 'a {v} b' > {O}", "a {p} b\n"),
    ("ansi-c", "printf '%s\\n' $'{v}' > {O}", "{p}\n"),
    ("ansi-c-escapes-around", "printf '%s' $'<\\t{v}\\'>' > {O}", "<\t{p}'>"),
    ("echo-ansi-c", "echo $'{v}' > {O}", "{p}\n"),
    ("dq-command-substitution", "echo \"$(echo {v})\" > {O}", "{p}\n"),
    ("dq-command-substitution-sq", "printf '%s\\n' \"$(printf '%s' '{v}')\" > {O}", "{p}\n"),
    ("command-substitution", "x=$(printf '%s' {v}); printf '%s\\n' \"$x\" > {O}", "{p}\n"),
    ("dq-backticks", "printf '%s\\n' \"`printf '%s' {v}`\" > {O}", "{p}\n"),
    ("backticks", "x=`printf '%s' \"{v}\"`; printf '%s\\n' \"$x\" > {O}", "{p}\n"),
    ("after-ansi-c-apostrophe", "echo $'it\\'s' > /dev/null\nprintf '%s\\n' {v} > {O}", "{p}\n"),
    ("after-comment-after-amp", "true &# don't wait\nprintf '%s\\n' {v} > {O}", "{p}\n"),
    ("comment-with-quotes", "# don't \"{v}\n(printf '%s\\n' {v}) > {O} # it's {v} \"", "{p}\n"),
    ("heredoc", "cat > {O} <<EOF\n{v}\nEOF", "{p}\n"),
    ("heredoc-in-command-substitution", "printf '%s\\n' \"$(cat <<EOF\n{v}\nEOF\n)\" > {O}", "{p}\n"),
    ("assignment", "X={v}; printf '%s\\n' \"$X\" > {O}", "{p}\n"),
    ("export", "export X={v}; printf '%s\\n' \"$X\" > {O}", "{p}\n"),
    ("function-local", "g() {{ local x={v}; printf '%s\\n' \"$x\"; }}; g > {O}", "{p}\n"),
    ("concatenated", "printf '%s\\n' pre{v}post > {O}", "pre{p}post\n"),
    ("function-argument", "f() {{ printf '%s\\n' \"$1\"; }}; f {v} > {O}", "{p}\n"),
    ("pipeline-subshell", "( printf '%s\\n' {v} ) | cat > {O}", "{p}\n"),
    ("case-pattern", "case {v} in {v}) printf '%s\\n' {v} > {O};; esac", "{p}\n"),
    ("test-string", "[[ {v} == {v} ]] && [ \"{v}\" = {v} ] && printf '%s\\n' {v} > {O}", "{p}\n"),
    ("here-string", "cat <<< {v} > {O}", "{p}\n"),
    ("arithmetic-nearby", "n=$(( 1 + 2 )); printf '%s\\n' \"{v}\" > {O}", "{p}\n"),
]
# (id, shell text, fragment of the refusal)
REFUSED_CONTEXTS: list[tuple[str, str, str]] = [
    ("heredoc-quoted", "cat <<'EOF'\n{v}\nEOF", "delimiter is quoted"),
    ("heredoc-backslash", "cat <<\\EOF\n{v}\nEOF", "delimiter is quoted"),
    ("arithmetic-expansion", "echo $(( {v} + 1 ))", "arithmetic"),
    ("arithmetic-command", "(( n = {v} ))", "arithmetic"),
    ("arithmetic-for", "for (( i = 0; i < {v}; i++ )); do :; done", "arithmetic"),
    ("arithmetic-output", "echo $(( $(printf '%s' {v}) ))", "arithmetic"),
    ("test-eq", "[[ {v} -eq 1 ]]", "arithmetic"),
    ("array-index", "a[{v}]=1", "arithmetic"),
    ("declare-integer", "declare -i n={v}", "integer"),
    ("eval", "eval \"echo {v}\"", "runs its arguments as code"),
    ("bash-c", "bash -c 'echo {v}'", "runs its arguments as code"),
    ("sh-c-path", "/bin/sh -ec \"echo {v}\"", "runs its arguments as code"),
    ("trap", "trap 'echo {v}' EXIT", "runs its arguments as code"),
    ("variable-name-glued", "echo $HOME{v}", "names a variable"),
    ("assigned-name", "{v}=1", "names a variable"),
    ("parameter-default", "echo \"${{HOME:-{v}}}\"", "inside ${...}"),
    ("printf-v-name", "printf -v {v} x", "names a variable"),
    ("declare-name", "declare \"{v}\"", "names a variable"),
    ("read-name", "read {v} <<< x", "names a variable"),
    ("test-v", "[[ -v {v} ]]", "names a variable"),
    ("syntax-error", "echo ( {v}", "cannot read"),
]


def _body(canary_dir: Path) -> str:
    lines = []
    for cid, snippet, _expect in SHELL_CONTEXTS:
        lines += snippet.replace("{O}", f"/workspace/o-{cid}.txt").splitlines()
    return "\n".join(lines) + "\necho end\n"


def _spec(body: str) -> str:
    indented = "".join("    " + line + "\n" for line in body.splitlines())
    return f"name: shell\nstaging: []\nrun:\n  body: |\n{indented}lifecycle: {{on_success: preserve}}\n"


def _expected(expect: str, payload: str) -> str:
    return expect.replace("{p}", payload)


def _run(tmp_path: Path, payload: str, backend: str, server=None):
    project = tmp_path / "proj"
    project.mkdir()
    be = pod_root = None
    if backend == "ssh":
        from podmagic.backends.ssh.backend import SSHBackend

        pod_root = tmp_path / "pod"
        be = SSHBackend(server.host_spec, root=str(pod_root), known_hosts=tmp_path / "kh",
                        key_path=str(server.client_key))
    prepared = api.start(api.prepare(_spec(_body(tmp_path)), cwd=project, backend=backend,
                                     variables=[("v", _esc(payload))]))
    manifest = api.execute(prepared, listeners=[Recorder()], backend=be)
    if backend == "local":
        import os

        pod_root = Path(os.environ["PODMAGIC_LOCAL_ROOT"]) / "pods" / manifest["pod_id"]
    return manifest, prepared.plan, pod_root


def _check(tmp_path: Path, payload: str, manifest, plan, pod_root: Path) -> None:
    assert not (tmp_path / CANARY_NAME).exists(), "the canary was created: a value ran as code"
    assert manifest["failed"] is False, manifest["error"]
    assert (plan.run_dir / "run.log").read_text().endswith("end\n")
    got = {cid: (pod_root / "workspace" / f"o-{cid}.txt").read_text() for cid, _s, _e in SHELL_CONTEXTS}
    want = {cid: _expected(expect, payload) for cid, _s, expect in SHELL_CONTEXTS}
    assert got == want


@pytest.mark.parametrize("pid,tpl", SHELL_PAYLOADS, ids=[p[0] for p in SHELL_PAYLOADS])
def test_every_context_local(pid, tpl, hostile_env, tmp_path):
    payload = _payload(tpl, tmp_path / CANARY_NAME)
    _check(tmp_path, payload, *_run(tmp_path, payload, "local"))


@requires_sshd
@pytest.mark.parametrize("pid,tpl", SHELL_PAYLOADS, ids=[p[0] for p in SHELL_PAYLOADS])
def test_every_context_ssh(pid, tpl, hostile_env, tmp_path, module_sshd):
    payload = _payload(tpl, tmp_path / CANARY_NAME)
    manifest, plan, pod_root = _run(tmp_path, payload, "ssh", module_sshd)
    assert manifest["backend"] == "ssh"
    _check(tmp_path, payload, manifest, plan, pod_root)


@pytest.mark.parametrize("cid,snippet,fragment", REFUSED_CONTEXTS, ids=[c[0] for c in REFUSED_CONTEXTS])
@pytest.mark.parametrize("pid,tpl", SHELL_PAYLOADS, ids=[p[0] for p in SHELL_PAYLOADS])
def test_no_safe_reference_is_refused_with_a_position(cid, snippet, fragment, pid, tpl, tmp_path):
    payload = _payload(tpl, tmp_path / CANARY_NAME)
    text = "run: |\n  echo first\n" + "".join("  " + line + "\n" for line in snippet.splitlines())
    if template.PLAIN.match(payload):  # plain words are pasted as written, anywhere
        api.prepare(text, cwd=tmp_path, variables=[("v", _esc(payload))])
        return
    with pytest.raises(SpecError) as info:
        api.prepare(text, cwd=tmp_path, line_offset=1, variables=[("v", _esc(payload))])
    err = info.value
    assert fragment in err.message and "\n" not in str(err) and str(err).startswith("cell:")
    line = next(i for i, row in enumerate(text.splitlines()) if "{v}" in row)
    assert (err.line, err.col) == (line + 2, text.splitlines()[line].index("{v}") + 1), str(err)
    assert not (tmp_path / CANARY_NAME).exists()


ISSUE_BODIES = (  # the four bodies that ran a value as code before issue 12
    "echo \"$(echo {v})\"\n",
    "echo $'it\\'s' > /dev/null\necho {v}\n",
    "echo $'{v}'\n",
    "true &# don't wait\necho {v}\n",
)


@pytest.mark.parametrize("body", ISSUE_BODIES, ids=["dq-cmdsub", "ansi-c-earlier", "ansi-c", "comment-amp"])
def test_the_issue_bodies_through_the_cli(body, hostile_env, tmp_path):
    """`podmagic run FILE --var v0=PAYLOAD ...` as a subprocess, every payload: no canary, each echoed."""
    project = tmp_path / "proj"
    project.mkdir()
    payloads = [_payload(tpl, tmp_path / CANARY_NAME) for _pid, tpl in SHELL_PAYLOADS]
    (project / "job.yaml").write_text(_spec("".join(body.replace("{v}", f"{{v{i}}}") for i in range(len(payloads)))))
    flags = [a for i, p in enumerate(payloads) for a in ("--var", f"v{i}={_esc(p)}")]
    res = _cli(["run", "job.yaml", *flags], project, {})
    assert not (tmp_path / CANARY_NAME).exists(), "the canary was created: a value ran as code"
    assert res.returncode == 0, res.stderr
    assert res.stdout == "".join(p + "\n" for p in payloads)


def test_plain_words_still_split_into_arguments(hostile_env, tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    prepared = api.start(api.prepare(_spec("printf '<%s>' {args} > /workspace/a.txt\n"), cwd=project,
                                     variables=[("args", "--fp16 --bs 8")]))
    assert "PODMAGIC_V_" not in prepared.plan.launch.body
    manifest = api.execute(prepared, listeners=[Recorder()])
    root = Path(hostile_env) / "pods" / manifest["pod_id"]
    assert (root / "workspace" / "a.txt").read_text() == "<--fp16><--bs><8>"


def counts() -> dict[str, int]:
    return {
        "shell_payloads": len(SHELL_PAYLOADS),
        "shell_contexts": len(SHELL_CONTEXTS),
        "refused_contexts": len(REFUSED_CONTEXTS),
        "shell_injections_tried": (len(SHELL_PAYLOADS) * len(SHELL_CONTEXTS) * 2
                                   + len(SHELL_PAYLOADS) * len(REFUSED_CONTEXTS)
                                   + len(SHELL_PAYLOADS) * len(ISSUE_BODIES)),
        "shell_runs": len(SHELL_PAYLOADS) * 2 + len(ISSUE_BODIES) + 1,
    }
