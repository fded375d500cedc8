"""What reaches the user's terminal: text from elsewhere (model answers, eval references, job events, file names,
backends' errors) never carries terminal control characters. An `ESC ]0;…` in a reference would retitle the terminal,
a CSI sequence move the cursor or hide the text after it, and C1 codes (`\\x9b` is CSI on its own) do the same on
terminals that read them; rich itself removes only BEL, BS, VT, FF and CR. The consoles ftcli prints with are
`SafeConsole`s, so every renderable is cleaned where it is written, whatever built it; `printable` cleans the plain
text written without rich (a streamed answer, an id). With --json the exact text goes out, escaped by JSON."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table

KEPT = "\n\t"
# C0 (0x00-0x1f), DEL and C1 (0x80-0x9f), newline and tab excepted
_CONTROL_CHARACTERS = {code: None for code in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if chr(code) not in KEPT}
# and the bidirectional overrides and isolates, which make text read otherwise than it is (Trojan Source)
_CONTROL_CHARACTERS.update({code: None for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))})


def printable(text: str) -> str:
    """`text` without terminal control characters (newline and tab stay)."""
    return text.translate(_CONTROL_CHARACTERS)


class SafeConsole(Console):
    """A rich console whose text segments are cleaned just before they are written. rich's own control segments
    (cursor moves of a live progress bar) and its styles (colours it adds itself) pass untouched."""

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        cleaned = (
            segment if segment.control else Segment(printable(segment.text), segment.style) for segment in buffer
        )
        return super()._render_buffer(cleaned)


class WholeTable(Table):
    """A table whose ids and model names (`add_whole_column`), which a user copies, are never wrapped nor cut short
    (`ftjob-753f…`), however narrow the terminal: the other columns wrap first, and if the table still doesn't fit it
    grows past the terminal's edge (ftcli's consoles soft-wrap; they never crop a line)."""

    def add_whole_column(self, header: str, values: Iterable[str], **settings: Any) -> None:
        """A column one line high, as wide as its longest value (every no-wrap column of the table is one of these:
        the width the table needs counts each column's narrowest)."""
        longest = max((cell_len(value) for value in values), default=0)
        self.add_column(header, no_wrap=True, min_width=max(longest, cell_len(header)), **settings)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # rich shrinks every column, no-wrap ones too, to fit the terminal; so render at least as wide as the columns'
        # minimums (each whole column's longest value, each other column's longest word)
        needed = Measurement.get(console, options.update_width(_UNBOUNDED), self).minimum
        yield from super().__rich_console__(console, options.update_width(max(options.max_width, needed)))


_UNBOUNDED = 1 << 16
