"""Terminal text → HTML: ANSI colours and styles as inline-styled spans, every other escape dropped.

Imports nothing but the standard library. Our own small converter rather than
`ansi2html`: we need inline styles (a saved notebook, nbconvert and GitHub have
no stylesheet of ours) whose colours read in JupyterLab's light and dark themes,
output that is always escaped HTML, and the same function for the live view,
the static record, the sweep log and the Pods panel; SGR is the only part of
the terminal language a log needs, and that is a few dozen lines.

`to_html(text)` never lets an escape character through: SGR sequences become
spans, other CSI/OSC sequences (cursor moves, erase line, titles, hyperlinks'
framing) are removed, and a sequence cut off at the end of the text is removed.
`strip(text)` gives the plain text.
"""

from __future__ import annotations

import html
import re

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), charset and two-character escapes, lone ESC.
_ESCAPE = re.compile(r"\x1b(?:\[([0-9;:?<=>]*)([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()*+#%][ -~]?|[@-Z\\-_]|$)|\x1b\[[0-9;:?]*$|\x1b\][^\x07]*$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HTML_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

# Mid-tone colours that read on a white and on a near-black background (JupyterLab's own ANSI
# palette); black and white follow the theme's text colours so they never vanish.
_PALETTE = (
    "var(--jp-ui-font-color1,#3e424d)", "#d0312d", "#1a9a4a", "#b58900",
    "#2f7ae5", "#b854b0", "#1b9aa0", "var(--jp-ui-font-color2,#8a8a8a)",
)
_BRIGHT = (
    "var(--jp-ui-font-color2,#6e7781)", "#ee5a52", "#2bb55f", "#d4a718",
    "#5b9bf0", "#d16fcb", "#3cbfc4", "var(--jp-ui-font-color1,#c5c1b4)",
)


def strip(text: str) -> str:
    """The text without escape sequences or stray control characters (tabs and newlines kept)."""
    return _CONTROL.sub("", _ESCAPE.sub("", text))


def _xterm256(n: int) -> str | None:
    if n < 8:
        return _PALETTE[n]
    if n < 16:
        return _BRIGHT[n - 8]
    if n < 232:
        n -= 16
        levels = (0, 95, 135, 175, 215, 255)
        return "#%02x%02x%02x" % (levels[n // 36], levels[n // 6 % 6], levels[n % 6])
    if n < 256:
        grey = 8 + 10 * (n - 232)
        return "#%02x%02x%02x" % (grey, grey, grey)
    return None


class _Style:
    __slots__ = ("fg", "bg", "bold", "dim", "italic", "underline", "strike", "inverse")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.fg = self.bg = None
        self.bold = self.dim = self.italic = self.underline = self.strike = self.inverse = False

    def apply(self, params: str) -> None:
        codes = [int(p) if p.isdigit() else 0 for p in params.replace(":", ";").split(";")] if params else [0]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                self.reset()
            elif c in (1, 2, 3, 4, 7, 9):
                setattr(self, {1: "bold", 2: "dim", 3: "italic", 4: "underline", 7: "inverse", 9: "strike"}[c], True)
            elif c == 22:
                self.bold = self.dim = False
            elif c in (23, 24, 27, 29):
                setattr(self, {23: "italic", 24: "underline", 27: "inverse", 29: "strike"}[c], False)
            elif 30 <= c <= 37 or 90 <= c <= 97:
                self.fg = _PALETTE[c - 30] if c < 90 else _BRIGHT[c - 90]
            elif 40 <= c <= 47 or 100 <= c <= 107:
                self.bg = _PALETTE[c - 40] if c < 100 else _BRIGHT[c - 100]
            elif c == 39:
                self.fg = None
            elif c == 49:
                self.bg = None
            elif c in (38, 48) and i + 1 < len(codes):
                colour, used = None, 1
                if codes[i + 1] == 5 and i + 2 < len(codes):
                    colour, used = _xterm256(codes[i + 2]), 2
                elif codes[i + 1] == 2 and i + 4 < len(codes):
                    r, g, b = (min(255, v) for v in codes[i + 2:i + 5])
                    colour, used = f"#{r:02x}{g:02x}{b:02x}", 4
                if c == 38:
                    self.fg = colour
                else:
                    self.bg = colour
                i += used
            i += 1

    def css(self) -> str:
        fg, bg = (self.bg, self.fg) if self.inverse else (self.fg, self.bg)
        if self.inverse:
            fg = fg or "var(--jp-layout-color0,#fff)"
            bg = bg or "var(--jp-ui-font-color1,#222)"
        parts = []
        if fg:
            parts.append(f"color:{fg}")
        if bg:
            parts.append(f"background-color:{bg}")
        if self.bold:
            parts.append("font-weight:bold")
        if self.dim:
            parts.append("opacity:.7")
        if self.italic:
            parts.append("font-style:italic")
        lines = [n for n, on in (("underline", self.underline), ("line-through", self.strike)) if on]
        if lines:
            parts.append("text-decoration:" + " ".join(lines))
        return ";".join(parts)


def to_html(text: str) -> str:
    """Escaped HTML for `text`, with SGR colours and styles as `<span style=...>`."""
    out: list[str] = []
    style = _Style()
    open_css = ""
    pos = 0

    def emit(chunk: str) -> None:
        chunk = _HTML_CONTROL.sub("", chunk)
        if chunk:
            escaped = html.escape(chunk, quote=False)
            out.append(f"<span style=\"{open_css}\">{escaped}</span>" if open_css else escaped)

    for m in _ESCAPE.finditer(text):
        emit(text[pos:m.start()])
        pos = m.end()
        if m.group(2) == "m":
            style.apply(m.group(1) or "")
            open_css = style.css()
    emit(text[pos:])
    return "".join(out)
