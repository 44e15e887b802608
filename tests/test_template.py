"""`spec.template` on its own: names, escapes, errors, and values in shell text (`render_shell`)."""

from __future__ import annotations

import subprocess

import pytest

from podmagic.errors import PodmagicError
from podmagic.spec.template import ENV_PREFIX, ShellValueError, TemplateError, names, render, render_shell

V = {"seed": "3", "out": "/a b/o", "evil": "x'; rm -rf / #", "dq": 'say "hi" $HOME `id` \\'}


def test_names_are_replaced_and_escapes_become_braces():
    assert render("train-{seed} {out}", V) == "train-3 /a b/o"
    assert render("${{HOME}} {{seed}} {{{seed}}}", V) == "${HOME} {seed} {3}"
    assert render('{"a": 1} {not a name} {1x}', V) == '{"a": 1} {not a name} {1x}'
    assert render("", V) == "" and render("no braces", {}) == "no braces"


def test_names_lists_references_without_escapes():
    assert names("{a} {{b}} {c}{a} {1x}") == ["a", "c", "a"]


def test_unknown_name_says_how_to_fix_it():
    with pytest.raises(TemplateError) as info:
        render("python t.py --seed {sed}", V)
    err = info.value
    assert isinstance(err, PodmagicError) and err.name == "sed" and err.offset == len("python t.py --seed ")
    assert "did you mean {seed}?" in str(err) and "--var sed=VALUE" in str(err) and "{{sed}}" in str(err)


def test_unknown_name_without_a_close_match_has_no_guess():
    with pytest.raises(TemplateError) as info:
        render("{zzz}", V)
    assert "did you mean" not in str(info.value)


def test_outside_shell_text_values_are_pasted_as_they_are():
    assert render("{evil}", V) == V["evil"]


def bash(shell) -> str:
    return subprocess.run(["bash", "-c", shell.with_exports()], capture_output=True, text=True, check=True).stdout


def test_plain_words_are_pasted_and_split_as_written():
    shell = render_shell("printf '<%s>' {flags}", {"flags": "--fp16 --bs 8"})
    assert shell.text == "printf '<%s>' --fp16 --bs 8" and shell.env == ()
    assert bash(shell) == "<--fp16><--bs><8>"


@pytest.mark.parametrize("template", ["printf %s {evil}", "printf %s \"{evil}\"", "printf %s '{evil}'",
                                      "printf %s {dq}", "printf %s 'a {dq} b'", "printf %s \"pre-{dq}-post\""])
def test_other_values_reach_bash_as_data_in_every_quoting(template):
    shell = render_shell(template, V)
    name = "evil" if "{evil}" in template else "dq"
    assert V[name] not in shell.text and dict(shell.env) == {f"{ENV_PREFIX}{name}": V[name]}
    arg = template.split(" ", 2)[2].replace(f"{{{name}}}", V[name])
    expected = arg[1:-1] if arg[:1] in "'\"" and arg[-1:] == arg[:1] else arg
    assert bash(shell) == expected


def test_a_value_where_bash_cannot_take_data_is_refused_with_its_name():
    with pytest.raises(ShellValueError) as info:
        render_shell("echo $(( {evil} + 1 ))", V)
    assert info.value.name == "evil" and info.value.offset == len("echo $(( ")
    assert "not plain words" in str(info.value)
    assert render_shell("echo $(( {seed} + 1 ))", V).text == "echo $(( 3 + 1 ))"  # plain words are fine there
