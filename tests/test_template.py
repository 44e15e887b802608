"""`spec.template` on its own: names, escapes, errors, and the shell rule."""

from __future__ import annotations

import subprocess

import pytest

from podmagic.errors import PodmagicError
from podmagic.spec.template import ShellValueError, TemplateError, names, render

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


@pytest.mark.parametrize("template", ["echo '{evil}'", 'echo "{evil}"', "echo '{dq}'", 'echo "{dq}"',
                                      "echo 'a {evil} b'", 'echo "pre-{dq}-post"'])
def test_quoted_values_arrive_literally_in_bash(template):
    script = render(template, V, shell=True)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    name = "evil" if "{evil}" in template else "dq"
    literal = template.replace(f"{{{name}}}", V[name])[6:-1]
    assert out == literal + "\n"


def test_unquoted_shell_characters_are_refused_plain_words_pass():
    assert render("python t.py {flags}", {"flags": "--fp16 --bs 8"}, shell=True) == "python t.py --fp16 --bs 8"
    with pytest.raises(ShellValueError) as info:
        render("echo {evil}", V, shell=True)
    assert info.value.name == "evil" and "';'" in str(info.value) and "'{evil}'" in str(info.value)


def test_quote_state_follows_escapes_comments_and_brace_escapes():
    assert render("echo \\' {seed}", V, shell=True) == "echo \\' 3"  # an escaped quote opens nothing
    assert render("# it's a comment\necho '{evil}'", V, shell=True).endswith("'x'\\''; rm -rf / #'")
    with pytest.raises(ShellValueError):  # the apostrophe inside a comment does not open a quote
        render("# it's\necho {evil}", V, shell=True)
    assert render("echo a#b '{seed}'", V, shell=True) == "echo a#b '3'"  # # inside a word is no comment
