"""`run.redact` on its own: whole-text masking, JSON structures, and the stream masker."""

from __future__ import annotations

import random

import pytest

from podmagic.run.redact import MASK, Redactor

SECRET = "hf_abcdefghijklmnop"


def test_mask_replaces_every_occurrence_longest_first():
    r = Redactor([SECRET, "abc"])
    assert r.mask(f"a {SECRET} b {SECRET}") == f"a {MASK} b {MASK}"
    assert r.mask("xabcx") == f"x{MASK}x"
    assert Redactor().mask("nothing") == "nothing" and r.mask("") == ""


def test_short_values_are_not_masked_and_lines_are_masked_one_by_one():
    r = Redactor(["ab", "line-one\nline-two\n"])
    assert r.mask("ab line-one line-two") == f"ab {MASK} {MASK}"


def test_mask_data_masks_strings_anywhere():
    r = Redactor([SECRET])
    data = {"a": [SECRET, {"b": f"x{SECRET}"}], "n": 3, "t": (SECRET,), "none": None}
    assert r.mask_data(data) == {"a": [MASK, {"b": f"x{MASK}"}], "n": 3, "t": [MASK], "none": None}


def feed_all(r: Redactor, chunks) -> str:
    masker = r.stream()
    return "".join(masker.feed(c) for c in chunks) + masker.feed("", final=True)


@pytest.mark.parametrize("cut", range(1, len(SECRET)))
def test_a_secret_split_across_two_chunks_is_masked(cut):
    r = Redactor([SECRET])
    text = f"token={SECRET} end"
    at = len("token=") + cut
    assert feed_all(r, [text[:at], text[at:]]) == f"token={MASK} end"


def test_a_secret_split_across_many_chunks_is_masked():
    r = Redactor([SECRET, "other-secret"])
    text = f"{SECRET}{SECRET} and other-secret, {SECRET[:5]} is not one\n"
    assert feed_all(r, list(text)) == f"{MASK}{MASK} and {MASK}, {SECRET[:5]} is not one\n"


def test_random_chunkings_equal_whole_text_masking():
    rng = random.Random(7)
    secrets = [SECRET, "pa55word", "pa55word-longer"]
    r = Redactor(secrets)
    for _ in range(200):
        text = "".join(rng.choice([*secrets, "pa55", "x", " ", "\n", "hf_", "word"]) for _ in range(30))
        cuts = sorted(rng.sample(range(1, len(text)), k=min(6, len(text) - 1)))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        assert feed_all(r, chunks) == r.mask(text), chunks


def test_a_possible_prefix_is_held_back_only_until_it_cannot_be_a_secret():
    masker = Redactor([SECRET]).stream()
    assert masker.feed("log hf_abc") == "log "  # could begin the secret: held
    assert masker.feed("X\n") == "hf_abcX\n"  # it did not: released unmasked
    assert masker.feed("tail hf_") == "tail "
    assert masker.feed("", final=True) == "hf_"  # the end of the stream releases what was held


def test_a_stream_with_no_secrets_passes_through_at_once():
    masker = Redactor().stream()
    assert masker.feed("abc") == "abc" and masker.feed("", final=True) == ""


def test_secrets_added_later_are_masked_from_then_on():
    r = Redactor()
    r.add(SECRET)
    assert r.longest == len(SECRET) and feed_all(r, [SECRET[:4], SECRET[4:]]) == MASK
