"""rsync-style selection of staged files."""

from __future__ import annotations

from podmagic.plan import staging
from podmagic.spec.schema import DEFAULT_STAGING_EXCLUDES as D


def test_exclude_patterns_follow_rsync():
    assert staging.excluded("a/b/__pycache__", True, D) and staging.excluded("__pycache__", True, D)
    assert staging.excluded("x.pyc", False, D) and staging.excluded("a/x.pyc", False, D)
    assert staging.excluded(".git", True, D) and not staging.excluded(".gitignore", False, D)
    assert not staging.excluded(".venv", False, D)  # trailing / matches directories only
    assert staging.excluded("data", True, ["/data/"]) and not staging.excluded("x/data", True, ["/data/"])
    assert staging.excluded("x/data", True, ["data/"])
    assert staging.excluded("a/b/c.txt", False, ["b/*.txt"]) and not staging.excluded("c.txt", False, ["b/*.txt"])
    assert staging.excluded("m/checkpoint-5", True, ["checkpoint-*"])


def test_select_walks_prunes_and_keeps_rsync_trailing_slash(tmp_path):
    src = tmp_path / "payload"
    for rel in ("a.txt", "sub/b.txt", "sub/__pycache__/c.pyc", "skip/d.txt"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    contents = staging.select(str(src) + "/", "/w/p/", D + ("skip/",))
    assert contents.files == ("a.txt", "sub/b.txt") and contents.destination == "/w/p/"
    itself = staging.select(str(src), "/w", ())
    assert itself.destination == "/w/payload"
    single = staging.select(str(src / "a.txt"), "/w/dir/", ())
    assert single.single_file and single.destination == "/w/dir/a.txt"


def test_git_selection_is_tracked_plus_untracked_not_ignored(project):
    (project / "new.py").write_text("x")
    (project / "artifacts" / "runpod" / "r1").mkdir(parents=True)
    (project / "artifacts" / "runpod" / "r1" / "run.log").write_text("old run")
    sel = staging.select(str(project), "/workspace/repo", D, use_git=True)
    assert set(sel.files) == {".gitignore", "pyproject.toml", "uv.lock", "train.py", "new.py"}


def test_deletions_spare_excluded_files():
    gone = staging.deletions(["a", "b", "keep/x", "c.pyc"], ["a"], ("keep/", "*.pyc"))
    assert gone == ["b"]
