"""The pure plan: phase order, the exact pin command, templates, dry-run text."""

from __future__ import annotations

from pathlib import Path

import pytest

from podmagic.plan.build import Context, build, describe, pin_command
from podmagic.spec.jobspec import SpecError, parse

CTX = Context(project_root=Path("/p"), config_dir=Path("/p"), run_suffix="20260101T000000Z-abcd")


def plan_of(text: str, **kw):
    ctx = Context(**{**CTX.__dict__, **kw})
    return build(parse(text, line_offset=1), ctx)


def test_pin_is_preflight_zero_with_the_exact_recipe_command():
    p = plan_of("pod: {python_version: \"3.13.5\"}\npreflight: [{command: uv sync}]\nrun: x\n")
    assert p.preflight[0].command == "uv python install 3.13.5 && cd /workspace/repo && uv python pin 3.13.5"
    assert p.preflight[1].command == "uv sync"
    assert [c.phase for c in p.preflight] == ["preflight", "preflight"]


def test_pin_cds_into_first_staging_destination_or_home():
    staged = plan_of("pod: {python_version: \"3.13\"}\nstaging:\n  - {label: a, source: src/, destination: "
                     "\"/workspace/{job_name}/\"}\n  - {label: b, source: b, destination: /root/x}\nrun: x\n", default_name="j")
    assert staged.preflight[0].command == "uv python install 3.13 && cd /workspace/j/ && uv python pin 3.13"
    bare = plan_of("pod: {python_version: \"3.13\"}\nstaging: []\nrun: x\n")
    assert bare.preflight[0].command == 'uv python install 3.13 && cd "$HOME" && uv python pin 3.13'
    assert pin_command("3.12", "/a b") == "uv python install 3.12 && cd '/a b' && uv python pin 3.12"


def test_no_pin_without_python_version():
    p = plan_of("preflight: [{command: ls}]\nrun: x\n")
    assert [c.command for c in p.preflight] == ["ls"]


def test_default_staging_is_the_project_to_workspace_repo():
    p = plan_of("run: x\n")
    (push,) = p.staging
    assert push.use_git and push.source == "/p" and push.destination == "/workspace/repo"
    assert p.launch.workdir == "/workspace/repo"
    custom_mount = plan_of("storage: {mode: ephemeral, volume_gb: 5, volume_mount: /data}\nrun: x\n")
    assert custom_mount.staging[0].destination == "/data/repo"


def test_templates_builtins_variables_and_escapes():
    p = plan_of("name: train-{seed}\nvariables: {seed: \"1\", out: \"{run_dir}/o\"}\n"
                "run: |\n  echo ${{HOME}} {seed} {out} {{literal}} '{\"json\": 1}'\n",
                cli_variables=(("seed", "7"),))
    assert p.job_name == "train-7"
    assert p.run_id == "train-7-20260101T000000Z-abcd"
    assert p.launch.body == ("echo ${HOME} 7 /p/artifacts/runpod/train-7-20260101T000000Z-abcd/o {literal} "
                             "'{\"json\": 1}'\n")
    assert p.variables == {"seed": "7", "out": "/p/artifacts/runpod/train-7-20260101T000000Z-abcd/o"}


def test_unknown_template_variable_points_into_the_block():
    with pytest.raises(SpecError) as info:
        plan_of("run: |\n  echo ok\n  echo ${HOME}\n")
    assert (info.value.line, info.value.col) == (4, 9)
    assert "${{HOME}}" in info.value.message


def test_variable_loops_are_errors():
    with pytest.raises(SpecError, match="loop"):
        plan_of("variables: {a: \"{b}\", b: \"{a}\"}\nrun: echo {a}\n")


def test_with_env_commands_get_the_remote_env_prefix_quoted():
    p = plan_of("remote_env:\n  source_files: [/workspace/secrets/env]\n  exports: {A: \"x y'z\"}\n"
                "setup: [{command: echo hi, with_env: true}, {command: echo plain}]\nrun: x\n")
    assert p.setup[0].command == ("[ -f /workspace/secrets/env ] && source /workspace/secrets/env || true; "
                                  "export A='x y'\"'\"'z'; echo hi")
    assert p.setup[1].command == "echo plain"


def test_artifact_paths_must_stay_in_the_project():
    ok = plan_of("run: x\nartifacts: [{label: m, remote_path: /workspace/m, local_path: \"{run_dir}/m\"}]\n")
    assert ok.pulls[0].label == "log" and ok.pulls[1].local_path == ok.run_dir / "m"
    for bad in ("/etc/passwd", "../outside", "{run_dir}/../../../../x"):
        with pytest.raises(SpecError, match="outside the project"):
            plan_of(f"run: x\nartifacts: [{{label: m, remote_path: /w, local_path: \"{bad}\"}}]\n")


def test_runpod_backend_requires_pod_fields():
    with pytest.raises(SpecError, match="pod.image` is required on the runpod backend"):
        plan_of("run: x\n", backend="runpod")


def test_describe_lists_phases_in_order_and_masks():
    p = plan_of("pod: {python_version: \"3.12.1\"}\nsetup: [{command: apt-get install -y rsync}]\n"
                "preflight: [{command: uv sync}]\nrun: echo {token}\n", cli_variables=(("token", "s3cr3t"),),
                secret_variables=frozenset({"token"}))
    text = describe(p, lambda s: s.replace("s3cr3t", "***"))
    order = [text.index(tag) for tag in ("[setup]", "[staging:project]", "[python pin]", "[preflight] uv sync",
                                         "[probe]", "[run]", "[pull:log]", "[lifecycle]")]
    assert order == sorted(order)
    assert "s3cr3t" not in text and "echo ***" in text


def test_values_in_shell_text_arrive_literally_or_are_refused():
    hostile = "x'; touch CANARY; echo '$(id)"
    p = plan_of("run: |\n  echo '{v}'\n  echo \"{v}\" {v}\n  python train.py {args}\n",
                cli_variables=(("v", hostile), ("args", "--fp16 --bs 8")))
    assert p.launch.body == ("export PODMAGIC_V_v=$'x\\'; touch CANARY; echo \\'$(id)'; "
                             "echo ''\"${PODMAGIC_V_v}\"''\n"
                             "echo \"${PODMAGIC_V_v}\" \"${PODMAGIC_V_v}\"\npython train.py --fp16 --bs 8\n")
    with pytest.raises(SpecError) as info:
        plan_of("setup: [{command: 'ls'}]\nrun: |\n  echo ok {v}\n  echo $(( {v} ))\n", cli_variables=(("v", "$(id)"),))
    assert (info.value.line, info.value.col) == (5, 12) and "arithmetic" in info.value.message
    # not shell text: markers and paths take values as they are (podmagic quotes them itself)
    assert plan_of("run: {body: x, success_marker: \"[{v}] done\"}\n", cli_variables=(("v", "a;b"),)
                   ).success_marker == "[a;b] done"
