"""Usage bookkeeping for one exchange: estimates while streaming, the upstream's word at the end."""

from __future__ import annotations

from streams.records import usage_args
from streams.tokens import count_tokens
from streams.types import Usage


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
        """What watchers see mid-stream: never lower than before, per field.

        The 5-minute cache writes are what the highest total leaves after the highest 1-hour
        count, so a report that moves writes from one TTL to the other is not added twice.
        """
        e, w, r = self.estimate, self.written, self.reported or self.estimate
        return Usage(
            input_tokens=max(e.input_tokens, w.input_tokens, r.input_tokens),
            output_tokens=max(e.output_tokens, w.output_tokens, r.output_tokens),
            cache_read_input_tokens=max(
                e.cache_read_input_tokens, w.cache_read_input_tokens, r.cache_read_input_tokens
            ),
            cache_creation_input_tokens=max(
                e.cache_creation_input_tokens,
                w.cache_creation_input_tokens,
                r.cache_creation_input_tokens,
            ),
            cache_creation_1h_input_tokens=max(
                e.cache_creation_1h_input_tokens,
                w.cache_creation_1h_input_tokens,
                r.cache_creation_1h_input_tokens,
            ),
        ).totalled()

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
        """Counter increments that bring what was written up (or down) to ``target``, in
        the order the Lua scripts take them."""
        return [t - w for t, w in zip(usage_args(target), usage_args(self.written), strict=True)]

    def mark_written(self, usage: Usage) -> None:
        self.written = usage
