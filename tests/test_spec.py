"""Spec parsing: runpod-deploy configs parse unchanged; bad input gives one positioned error."""

from __future__ import annotations

from pathlib import Path

import pytest

from podmagic.spec import schema
from podmagic.spec.jobspec import SpecError, decode, parse

CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.yaml"))


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_runpod_deploy_configs_parse_unchanged(path):
    spec = parse(path.read_text(), source=path.name)
    assert spec.pod.image and spec.pod.datacenters and spec.pod.gpu_order
    assert spec.run.body.strip()
    assert spec.storage.mode in ("ephemeral", "network_volume")


def test_corpus_values_mean_what_runpod_deploy_means():
    spec = parse((Path(__file__).parent / "corpus" / "v3_1_ephemeral.yaml").read_text())
    assert spec.pod.ports == ("22/tcp", "8888/http")
    assert spec.pod.min_memory_gb == 64 and spec.budget.ssh_ready_timeout_sec == 1200
    assert spec.staging[1].delete is False and spec.staging[0].delete is True
    assert spec.staging[1].effective_excludes[: len(schema.DEFAULT_STAGING_EXCLUDES)] == schema.DEFAULT_STAGING_EXCLUDES
    assert dict(spec.remote_env.exports)["UV_LINK_MODE"] == "copy"
    assert spec.preflight[0].with_env and spec.preflight[0].timeout_sec == 1800
    assert spec.secrets[0].env == ("HF_TOKEN",) and spec.secrets[0].mode == "0600"
    assert spec.lifecycle.on_success == "delete"
    assert spec.budget.timeout_sec == pytest.approx(50.0 / 3.0 * 3600)


def test_notebook_conveniences():
    spec = parse("run: python train.py\n")
    assert spec.run.body == "python train.py"
    assert spec.staging is None  # → default project staging
    assert spec.storage.mode == "ephemeral" and spec.storage.volume_gb == 20
    assert spec.name is None and spec.lifecycle.on_failure == "stop"
    assert parse("run: x\nstaging: []\n").staging == ()


def test_budget_timeout_rules():
    assert parse("run: x\nbudget: {max_runtime_minutes: 7}\n").budget.timeout_sec == 420
    assert parse("run: x\nbudget: {cost_cap_usd: 1, assumed_hourly_rate_usd: 2}\n").budget.timeout_sec == 1800


BAD = [
    # (cell body, line, col, fragment)   lines count the %%pod line (line_offset=1)
    ("pod:\n  gpu_order: NVIDIA\nrun: x\n", 3, 14, "`pod.gpu_order` must be a list of strings"),
    ("pod:\n  python_version: 3.13\nrun: x\n", 3, 19, 'quote it: "3.13"'),
    ("pod:\n  python_version: 3.10\nrun: x\n", 3, 19, 'quote it: "3.10"'),
    ("pod:\n  python_version: \"3\"\nrun: x\n", 3, 19, "must look like"),
    ("pod:\n  python_version: \"3.13.5a1\"\nrun: x\n", 3, 19, "must look like"),
    ("pod:\n  python_version: \"{py}\"\nrun: x\n", 3, 19, "must look like"),
    ("pod:\n  imgae: x\nrun: x\n", 3, 3, "did you mean `image`"),
    ("run: x\nartifact: []\n", 3, 1, "did you mean `artifacts`"),
    ("run: x\nrun: y\n", 3, 1, "duplicate key `run`"),
    ("pod:\n  image: a\n  image: b\nrun: x\n", 4, 3, "duplicate key `pod.image`"),
    ("", 2, 1, "the spec is empty"),
    ("# just a comment\n\n# another\n", 2, 1, "the spec is empty"),
    ("pod:\n\timage: x\nrun: x\n", 3, 1, "not tabs"),
    ("run: [unclosed\n", 3, 1, "invalid YAML"),
    ("- a\n- b\n", 2, 1, "must be a mapping"),
    ("pod: {gpu_count: 0}\nrun: x\n", 2, 18, "must be > 0"),
    ("pod: {gpu_count: true}\nrun: x\n", 2, 18, "whole number"),
    ("pod: {cloud_type: CHEAP}\nrun: x\n", 2, 19, "SECURE or COMMUNITY"),
    ("pod: {datacenters: []}\nrun: x\n", 2, 20, "at least one"),
    ("storage: {mode: tmpfs}\nrun: x\n", 2, 17, "ephemeral or network_volume"),
    ("storage: {mode: network_volume}\nrun: x\n", 2, 10, "volume_name` is required"),
    ("storage: {mode: ephemeral, volume_mount: data}\nrun: x\n", 2, 42, "absolute path"),
    ("budget: {cost_cap_usd: 0}\nrun: x\n", 2, 24, "must be > 0"),
    ("budget: {poll_interval_sec: 1.5}\nrun: x\n", 2, 29, "whole number"),
    ("lifecycle: {on_failure: recycle}\nrun: x\n", 2, 25, "cannot be 'recycle'"),
    ("lifecycle: {on_success: nuke}\nrun: x\n", 2, 25, "must be one of"),
    ("stop: {on_success: true}\nrun: x\n", 2, 1, "removed in runpod-deploy 0.8.3"),
    ("schema_version: 1\nrun: x\n", 2, 17, "schema_version must be 2"),
    ("name: \"\"\nrun: x\n", 2, 7, "must not be empty"),
    ("pod: {image: x}\n", 2, 1, "`run` is required"),
    ("run: \"   \"\n", 2, 6, "blank"),
    ("run: true\n", 2, 6, 'quote it: "true"'),
    ("run: {body: x, script_path: rel.sh}\n", 2, 29, "absolute pod path"),
    ("run: {body: x, nope: 1}\n", 2, 16, "unknown key `nope` in `run`"),
    ("run: x\nsetup: [{command: ''}]\n", 3, 19, "must not be blank"),
    ("run: x\nsetup: [{cmd: ls}]\n", 3, 10, "did you mean `command`"),
    ("run: x\nstaging: [{label: a, source: b}]\n", 3, 11, "`staging[0].destination` is required"),
    ("run: x\nstaging: {label: a}\n", 3, 10, "must be a list"),
    ("run: x\nsecrets: [{name: a, destination: /x}]\n", 3, 11, "exactly one of"),
    ("run: x\nsecrets: [{name: a, destination: /x, env: [BAD-NAME]}]\n", 3, 43, "not a valid environment"),
    ("run: x\nsecrets: [{name: a, destination: /x, env: [A], mode: \"999\"}]\n", 3, 54, "octal"),
    ("run: x\nremote_env: {exports: {BAD-KEY: v}}\n", 3, 24, "valid environment variable"),
    ("run: x\nartifacts: [{label: a, remote_path: /x}]\n", 3, 13, "local_path` is required"),
    ("run: x\nvariables: {seed: 1.5}\n", 3, 19, 'quote it: "1.5"'),
    ("run: x\nvariables: {run_id: x}\n", 3, 13, "built-in"),
    ("run: x\nvariables: {2bad: x}\n", 3, 13, "identifier"),
    ("run: x\ntelemetry: {sample_interval_sec: 2}\n", 3, 34, "≥ 5"),
    ("run: x\nlocal: {required_paths: a}\n", 3, 25, "list of strings"),
]


@pytest.mark.parametrize("text,line,col,fragment", BAD, ids=[b[3][:40] for b in BAD])
def test_bad_specs_give_one_positioned_error(text, line, col, fragment):
    with pytest.raises(SpecError) as info:
        parse(text, line_offset=1)
    err = info.value
    assert fragment in err.message
    assert (err.line, err.col) == (line, col), str(err)
    assert str(err).startswith(f"cell:{line}:{col}: error: ")
    assert "\n" not in str(err)


def test_alias_bomb_is_bounded():
    rows = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcde", "bcdef"):
        rows.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    with pytest.raises(SpecError, match="anchor/alias bomb"):
        parse("\n".join(rows) + "\nrun: x\n")


def test_very_large_cell_is_refused_before_parsing():
    with pytest.raises(SpecError, match="larger than"):
        parse("run: x\n" + "# filler\n" * 100_000)


def test_non_utf8_bytes_name_their_position():
    with pytest.raises(SpecError) as info:
        decode(b"run: |\n  echo caf\xe9\n", source="job.yaml")
    assert (info.value.line, info.value.col) == (2, 11)
    assert "UTF-8" in str(info.value) and str(info.value).startswith("job.yaml:2:11:")


def test_schema_table_covers_every_section():
    for key, kind in schema.ROOT.items():
        if kind in ("section", "list[section]"):
            assert key in schema.SECTIONS
    assert schema.as_json()["sections"]["pod"]["python_version"] == "str"
