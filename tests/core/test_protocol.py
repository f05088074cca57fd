import pytest

from app.worker import protocol as P


def test_round_trip_of_commands_and_events():
    job = {"id": "a", "kind": "generate", "prompt": "a cat\nwith a newline", "base": "x"}
    line = P.encode(P.submit(job))
    assert line.endswith("\n") and line.count("\n") == 1
    assert P.parse_command(line)["job"] == job
    ev = P.finished("a", P.JobStatus.FAILED, P.error(P.ErrorKind.BAD_INPUT, "bad", "detail"))
    parsed = P.parse_event(P.encode(ev))
    assert parsed == {
        "type": "finished",
        "job": "a",
        "status": "failed",
        "error": {"kind": "bad_input", "message": "bad", "detail": "detail"},
    }


@pytest.mark.parametrize(
    "line, reason",
    [
        ("not json", "not JSON"),
        ("[1,2]", "not a JSON object"),
        ('{"cmd": "dance"}', "unknown command"),
        ('{"cmd": "submit"}', "without a 'job'"),
        ('{"cmd": "submit", "job": {"kind": "generate"}}', "no string 'id'"),
        ('{"cmd": "submit", "job": {"id": "1", "kind": "paint"}}', "unknown job kind"),
        ('{"cmd": "cancel"}', "cancel without"),
        (b"\xff\xfe", "not UTF-8"),
        ("   ", "empty line"),
    ],
)
def test_malformed_commands_say_why(line, reason):
    with pytest.raises(P.ProtocolError, match=reason):
        P.parse_command(line)


@pytest.mark.parametrize(
    "line, reason",
    [
        ('{"type": "sparkle", "job": null}', "unknown event type"),
        ('{"type": "progress"}', "without a 'job'"),
        ('{"type": "finished", "job": "a", "status": "meh"}', "unknown status"),
        ('{"type": "image", "job": "a"}', "without a 'path'"),
    ],
)
def test_malformed_events_say_why(line, reason):
    with pytest.raises(P.ProtocolError, match=reason):
        P.parse_event(line)


def test_enums_encode_as_their_values():
    assert '"kind":"train"' in P.encode({"kind": P.JobKind.TRAIN})
