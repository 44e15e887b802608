"""Masking of secret values as `***` in everything podmagic writes or shows.

`Redactor.mask` masks a whole text; `Redactor.stream` returns a masker for
a chunked stream that holds back a possible secret prefix at the end of a
chunk, so a secret split across two chunks is still masked.

Besides each value (and each of its lines), the forms shells print it in are
masked: bash's `set -x` and `'\''` quoting, Python's `shlex.quote`
(`'"'"'`), `printf %q` backslashes and `$'...'` escapes. Other transformed
forms (base64, hex, URL-encoding, a value split by the program itself) are
not recognised.

Imports: `podmagic.spec.template` (the `$'...'` form podmagic writes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from podmagic.spec.template import ansi_c_quote

MASK = "***"
MIN_SECRET_LEN = 3
"""Shorter values would mask ordinary text everywhere; they are not masked."""


def shell_forms(value: str) -> set[str]:
    """The value and how shells print it inside quotes (set -x, shlex.quote, printf %q, $'...')."""
    return {
        value,
        value.replace("'", "'\\''"),  # bash set -x / declare -p: 'it'\''s'
        value.replace("'", "'\"'\"'"),  # shlex.quote: 'it'"'"'s'
        re.sub(r"([^\w@%+=:,./-])", r"\\\1", value),  # printf %q: it\'s\ here
        ansi_c_quote(value)[2:-1],  # $'it\'s\nx'
    }


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()):
        self._secrets: set[str] = set()
        self._regex: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *values: str) -> None:
        for value in values:
            for form in shell_forms(value):
                for piece in {form, form.strip(), *form.splitlines()}:
                    if len(piece) >= MIN_SECRET_LEN:
                        self._secrets.add(piece)
        ordered = sorted(self._secrets, key=len, reverse=True)
        self._regex = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    @property
    def longest(self) -> int:
        return max(map(len, self._secrets), default=0)

    def mask(self, text: str) -> str:
        return self._regex.sub(MASK, text) if self._regex and text else text

    def mask_data(self, data):
        """Mask every string inside a JSON-like structure."""
        if isinstance(data, str):
            return self.mask(data)
        if isinstance(data, dict):
            return {k: self.mask_data(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.mask_data(v) for v in data]
        return data

    def stream(self) -> "StreamMasker":
        return StreamMasker(self)


class StreamMasker:
    """Masks a chunked stream; holds back a tail that could begin a secret."""

    def __init__(self, redactor: Redactor):
        self._r = redactor
        self._pending = ""

    def feed(self, chunk: str, final: bool = False) -> str:
        text = self._pending + chunk
        regex = self._r._regex
        if final or regex is None:
            self._pending = ""
            return self._r.mask(text)
        cut = next(i for i in range(max(0, len(text) - self._r.longest + 1), len(text) + 1)
                   if any(s.startswith(text[i:]) for s in self._r._secrets) or i == len(text))
        for match in regex.finditer(text):
            if match.start() < cut < match.end():
                cut = match.start()
        self._pending = text[cut:]
        return self._r.mask(text[:cut])
