"""A spec's composed YAML is kept (`run.speccache`): a repeated run skips PyYAML and means the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from podmagic.errors import SpecError
from podmagic.run import api, speccache
from podmagic.spec import jobspec

CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.yaml"))
SPEC = "name: kept\nstaging: []\npod: {python_version: '3.10', gpu_order: [A, B]}\nrun: |\n  echo 'a: b'  # {x}\nvariables: {x: '1'}\n"


@pytest.fixture
def kept(tmp_path, monkeypatch) -> Path:
    where = tmp_path / "specs"
    monkeypatch.setenv(speccache.ENV, str(where))
    return where


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_kept_nodes_are_the_composed_nodes(path):
    """What is written and read back is what PyYAML composed: values (3.10 stays the text '3.10'
    where it was quoted, a float where not), raw text, positions, order."""
    text = path.read_text()
    for offset in (0, 1):
        composed = jobspec.compose(text, line_offset=offset)
        data = json.loads(json.dumps(jobspec.dump_nodes(composed)))
        assert jobspec.load_nodes(data) == composed
        from_kept = jobspec.parse(text, line_offset=offset, nodes=jobspec.load_nodes(data))
        fresh = jobspec.parse(text, line_offset=offset)
        assert from_kept == fresh and dict(from_kept.positions) == dict(fresh.positions)


def test_a_second_prepare_reads_the_kept_nodes_and_never_imports_yaml(kept, tmp_path):
    code = ("import sys, json; from pathlib import Path; from podmagic.run import api; "
            f"p = api.prepare({SPEC!r}, cwd=Path({str(tmp_path)!r})); "
            "print(json.dumps(['yaml' in sys.modules, repr((p.spec, dict(p.spec.positions), p.plan.spec_sha256))]))")
    env = {**os.environ, speccache.ENV: str(kept)}
    first, second = (json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                               text=True, check=True).stdout) for _ in range(2))
    assert first[0] is True and second[0] is False
    assert first[1] == second[1]
    assert len(list(kept.glob("*.json"))) == 1


@pytest.mark.parametrize("text", [
    "run: x\nzz_unknown: 1\n",
    "run: x\npod: {gpu_count: many}\n",
    "name: ''\nrun: x\n",
    "run: x\nstaging: [{label: a, source: ., destination: /x, excludes: null}]\n",
])
def test_errors_from_kept_nodes_are_the_errors_from_yaml(kept, text, tmp_path):
    said = []
    for _ in range(2):
        with pytest.raises(SpecError) as info:
            api.prepare(text, cwd=tmp_path, line_offset=1)
        said.append(str(info.value))
    assert said[0] == said[1] and said[0].startswith("cell:")
    assert len(list(kept.glob("*.json"))) == 1  # the YAML composed: its nodes were kept, the meaning refused twice


@pytest.mark.parametrize("text", [
    "run: x\npod: {image: [unclosed\n",  # YAML that does not compose
    "run: x\nname: 2024-01-01\n",          # a timestamp: JSON cannot keep it
    "run: x\nname: !!binary aGk=\n",       # bytes
    "",                                     # empty
])
def test_what_is_not_kept(kept, text, tmp_path):
    for _ in range(2):
        with pytest.raises(SpecError):
            api.prepare(text, cwd=tmp_path)
    assert not list(kept.glob("*.json"))


def test_a_broken_entry_is_composed_again_and_replaced(kept, tmp_path):
    api.prepare(SPEC, cwd=tmp_path)
    (entry,) = kept.glob("*.json")
    for broken in ("{", '{"nodes": ["x", 1, 1]}', '{"nodes": ["m", 1, 1, [["run", 1, 1, ["s", 1, 1, {}, "x"]]]]}'):
        entry.write_text(broken)
        assert api.prepare(SPEC, cwd=tmp_path).spec == jobspec.parse(SPEC)
        assert json.loads(entry.read_text())["nodes"] == jobspec.dump_nodes(jobspec.compose(SPEC))


def test_the_key_follows_the_text_the_offset_and_the_code(kept, tmp_path, monkeypatch):
    base = speccache._key(SPEC, 0)
    assert base != speccache._key(SPEC, 1) and base != speccache._key(SPEC + "\n", 0)
    fake_yaml = tmp_path / "yaml_init.py"
    fake_yaml.write_text("")
    monkeypatch.setattr(speccache, "_yaml_file", lambda: str(fake_yaml))
    speccache._code_stamp.cache_clear()  # the stamp is taken once a process: these stand for new processes
    before = speccache._key(SPEC, 0)
    assert before != base
    os.utime(fake_yaml, ns=(1, 1))
    assert speccache._key(SPEC, 0) == before  # the same process keeps its stamp
    speccache._code_stamp.cache_clear()
    assert speccache._key(SPEC, 0) != before  # another PyYAML: compose again
    speccache._code_stamp.cache_clear()


def test_off_keeps_nothing_and_the_folder_is_pruned(tmp_path, monkeypatch):
    monkeypatch.setenv(speccache.ENV, "off")
    api.prepare(SPEC, cwd=tmp_path)
    assert speccache.directory() is None
    where = tmp_path / "specs"
    monkeypatch.setenv(speccache.ENV, str(where))
    monkeypatch.setattr(speccache, "MAX_ENTRIES", 8)
    pruned = 0
    for i in range(300):
        text = f"run: echo {i}\n"
        before = len(list(where.glob("*.json")))
        speccache.nodes(text)
        after = len(list(where.glob("*.json")))
        if speccache._key(text, 0) < "08" and before + 1 > 8:  # a write that looks at the count, and too many
            assert after == 4, (before, after)  # the older half is gone
            pruned += 1
        else:
            assert after == before + 1
    assert pruned >= 2


def test_a_folder_that_cannot_be_written_costs_nothing_but_the_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(speccache.ENV, str(blocker / "specs"))
    assert api.prepare(SPEC, cwd=tmp_path).spec == jobspec.parse(SPEC)


def test_only_this_users_entries_in_a_folder_only_it_can_write_are_read(kept, tmp_path):
    """Kept nodes are the commands a run runs: an entry another user could have written is composed again."""
    api.prepare(SPEC, cwd=tmp_path)
    (entry,) = kept.glob("*.json")
    planted = json.dumps({"format": 1, "nodes": jobspec.dump_nodes(jobspec.compose(SPEC.replace("echo", "evil")))})
    entry.write_text(planted)
    os.chmod(kept, 0o777)  # a folder others may write to: nothing in it is trusted
    assert "evil" not in api.prepare(SPEC, cwd=tmp_path).spec.run.body
    os.chmod(kept, 0o700)
    entry.write_text(planted)
    os.chmod(entry, 0o666)  # an entry others may have rewritten
    assert "evil" not in api.prepare(SPEC, cwd=tmp_path).spec.run.body
    assert oct(kept.stat().st_mode & 0o777) == "0o700"
