"""The SSE reader the streaming tests rely on parses event streams the way browsers do."""

from __future__ import annotations

from tests.support.sse import SseEvent, SseParser


def _parse(*chunks: bytes) -> list[SseEvent]:
    parser = SseParser()
    return [event for chunk in chunks for event in parser.feed(chunk, 0.0)]


def test_fields_of_one_event_are_read() -> None:
    [event] = _parse(b'id: 1-0\nevent: delta\ndata: {"seq": 1}\nretry: 2500\n\n')
    assert (event.id, event.event, event.retry) == ("1-0", "delta", 2500)
    assert event.json() == {"seq": 1}
    assert event.dispatched


def test_crlf_cr_and_lf_line_ends_are_all_accepted() -> None:
    events = _parse(b"data: a\r\n\r\ndata: b\r\rdata: c\n\n")
    assert [event.data for event in events] == ["a", "b", "c"]


def test_a_crlf_split_across_chunks_ends_one_line_only() -> None:
    events = _parse(b"data: a\r", b"\n", b"\r", b"\ndata: b\n\n")
    assert [event.data for event in events] == ["a", "b"]


def test_an_event_is_yielded_as_soon_as_its_blank_line_arrives() -> None:
    parser = SseParser()
    assert parser.feed(b"event: delta\ndata: x\n", 1.0) == []
    [event] = parser.feed(b"\n", 2.0)
    assert event.received_at == 2.0


def test_a_multibyte_character_split_across_chunks_is_kept_whole() -> None:
    encoded = "data: héllo ✓\n\n".encode()
    [event] = _parse(encoded[:8], encoded[8:16], encoded[16:])
    assert event.data == "héllo ✓"


def test_data_lines_join_with_newlines_and_one_leading_space_is_stripped() -> None:
    [event] = _parse(b"data:  two\ndata:\ndata\ndata:x\n\n")
    assert event.data == " two\n\n\nx"


def test_comment_keepalives_are_reported_but_not_dispatched() -> None:
    [ping] = _parse(b": ping\n\n")
    assert ping.comments == ("ping",)
    assert ping.is_comment_only
    assert not ping.dispatched


def test_a_non_numeric_retry_is_ignored() -> None:
    [event] = _parse(b"retry: soon\ndata: x\n\n")
    assert event.retry is None


def test_last_event_id_carries_over_events_without_an_id() -> None:
    parser = SseParser()
    parser.feed(b"id: 5-0\ndata: a\n\ndata: b\n\n")
    assert parser.last_event_id == "5-0"


def test_a_leading_byte_order_mark_is_skipped() -> None:
    [event] = _parse(b"\xef\xbb\xbfevent: started\ndata: {}\n\n")
    assert event.event == "started"


def test_an_unterminated_block_at_the_end_is_not_an_event() -> None:
    assert _parse(b"event: done\ndata: {}\n") == []
