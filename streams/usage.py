"""Usage bookkeeping for one exchange: estimates while streaming, the upstream's word at the end."""

from __future__ import annotations

from streams.tokens import count_tokens
from streams.types import USAGE_FIELDS, Usage


class UsageMeter:
    def __init__(self) -> None:
        self.estimate = Usage()
        self.reported: Usage | None = None
        self.written = Usage()

    def add_text(self, text: str) -> None:
        self.estimate.output_tokens += count_tokens(text)

    def report(self, usage: Usage) -> None:
        """An upstream report is cumulative: it replaces the previous one."""
        self.reported = usage

    def shown(self) -> Usage:
        """What watchers see mid-stream: never lower than before, per field."""
        shown = Usage()
        for field in USAGE_FIELDS:
            values = [getattr(self.estimate, field), getattr(self.written, field)]
            if self.reported is not None:
                values.append(getattr(self.reported, field))
            setattr(shown, field, max(values))
        return shown.totalled()

    def final(self, *, complete: bool = True) -> Usage:
        """The exchange's exact usage: the upstream's own totals win over estimates.

        A stream cut short (cancel, failure) never got the upstream's totals; its last report
        may be the opening one with no output counted, so what was counted so far stands.
        """
        if not complete:
            return self.shown()
        if self.reported is None:
            return self.estimate.totalled()
        return self.reported.totalled()

    def unwritten(self, target: Usage) -> list[int]:
        """Counter increments that bring what was written up (or down) to ``target``."""
        return [getattr(target, f) - getattr(self.written, f) for f in USAGE_FIELDS]

    def mark_written(self, usage: Usage) -> None:
        self.written = usage
