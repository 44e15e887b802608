"""A bounded tail of a log stream, as a terminal would show it.

`\r` rewrites the current line (progress bars replace themselves instead of
piling up), lines are capped in length and only the last `max_lines` are
kept, so what a view renders stays small whatever the job prints. Standard library only.
"""

from __future__ import annotations

from collections import deque

MAX_LINE = 2000


class LogTail:
    def __init__(self, max_lines: int = 200):
        self.lines: deque[str] = deque(maxlen=max_lines)
        self.current = ""
        self.total_lines = 0
        self._rewind = False

    def feed(self, text: str) -> None:
        text = text.replace("\r\n", "\n")
        for i, piece in enumerate(text.split("\n")):
            if i > 0:
                self.lines.append(self.current)
                self.total_lines += 1
                self.current, self._rewind = "", False
            for j, segment in enumerate(piece.split("\r")):
                self._rewind = self._rewind or j > 0
                if segment:
                    base = "" if self._rewind else self.current
                    self.current, self._rewind = (base + segment)[:MAX_LINE], False

    def text(self) -> str:
        tail = list(self.lines)
        if self.current:
            tail.append(self.current)
        return "\n".join(tail)

