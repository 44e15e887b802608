"""runpod-deploy conformance: configs written from runpod-deploy 0.8.3's own tests.

`tests/conformance/accept/*.yaml` are configs runpod-deploy accepts: `podmagic validate` must
accept each on the runpod backend. `tests/conformance/reject/*.yaml` are configs it rejects;
each starts with `# expect: <fragment>` and podmagic must refuse it with one positioned line
holding that fragment. (Where podmagic is deliberately looser, e.g. `storage` defaulting to
ephemeral/20 GB, the README's YAML section says so; none of those are in `reject/`.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from podmagic.errors import PodmagicError
from podmagic.run import api
from podmagic.spec.jobspec import SpecError
from test_cli_mistakes import cli

pytestmark = pytest.mark.e2e  # real runs, CLI subprocesses or kernels: not in the fast lane (-m "not e2e")

CORPUS = Path(__file__).resolve().parent / "conformance"
ACCEPT = sorted((CORPUS / "accept").glob("*.yaml"))
REJECT = sorted((CORPUS / "reject").glob("*.yaml"))


def validate(path: Path, tmp_path: Path) -> api.Prepared:
    copy = tmp_path / "cfg" / path.name
    copy.parent.mkdir(exist_ok=True)
    shutil.copy(path, copy)
    (copy.parent / "key.pem").write_text("not a real key\n")
    return api.prepare(copy.read_text(), cwd=copy.parent, backend="runpod", source=copy.name,
                       default_name=copy.stem, config_path=str(copy), is_file=True)


def test_the_corpus_is_whole():
    assert len(ACCEPT) >= 35 and len(REJECT) >= 75


@pytest.mark.parametrize("path", ACCEPT, ids=[p.stem for p in ACCEPT])
def test_accepted_by_runpod_deploy_is_accepted(path, tmp_path):
    prepared = validate(path, tmp_path)
    assert prepared.plan.request.gpu_order and prepared.plan.run_id


@pytest.mark.parametrize("path", REJECT, ids=[p.stem for p in REJECT])
def test_rejected_by_runpod_deploy_is_refused_with_the_reason(path, tmp_path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: ")
    with pytest.raises(PodmagicError) as info:
        validate(path, tmp_path)
    message = str(info.value)
    assert "\n" not in message and first[len("# expect: "):] in message, message
    if isinstance(info.value, SpecError):
        assert message.startswith(f"{path.name}:") and info.value.line > 1  # the line of the mistake


def test_meanings_match_runpod_deploy(tmp_path):
    spec = validate(CORPUS / "accept" / "cloud_type_lowercase.yaml", tmp_path).spec
    assert spec.pod.cloud_type == "SECURE"
    staging = validate(CORPUS / "accept" / "staging_default_plus_extras.yaml", tmp_path).spec.staging[0]
    assert staging.effective_excludes[-3:] == ("mid.tmp", "evals/", "artifacts/")
    assert staging.effective_excludes[0] == ".git/"
    minimal = validate(CORPUS / "accept" / "minimal.yaml", tmp_path).spec
    assert (minimal.lifecycle.on_success, minimal.lifecycle.on_failure) == ("delete", "stop")
    assert minimal.budget.ssh_ready_timeout_sec == 900 and minimal.storage.volume_gb == 20


def test_through_the_command_line(pod_env, tmp_path):
    work = tmp_path / "cli"
    work.mkdir()
    for path in (CORPUS / "accept" / "hello_example.yaml", CORPUS / "reject" / "legacy_stop_false.yaml",
                 CORPUS / "reject" / "secret_destination_relative.yaml"):
        shutil.copy(path, work / path.name)
    ok = cli("validate", "--config", "hello_example.yaml", "--backend", "runpod", cwd=work)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: hello_example.yaml schema_version=2 job=hello"), ok.stderr
    for name in ("legacy_stop_false.yaml", "secret_destination_relative.yaml"):
        res = cli("validate", name, cwd=work)
        expect = (work / name).read_text().splitlines()[0][len("# expect: "):]
        assert res.returncode == 2 and expect in res.stderr and len(res.stderr.strip().splitlines()) == 1
