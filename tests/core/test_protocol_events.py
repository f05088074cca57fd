"""Typed events: encode -> decode gives the same object, for every event type, and the lines
older workers (and the fake worker) send still decode."""

from __future__ import annotations

import json

import pytest

from app.core.events import ArtifactKind, ArtifactSaved, ImageReady, LogLevel, LogLine, Phase, Progress
from app.worker import protocol as P

EVERY_EVENT = [
    P.Hello(device="cpu", torch="2.4.0", diffusers="0.30.0", cuda_name=None, protocol=1, pid=42),
    P.Pong(),
    P.Accepted(kind=P.JobKind.TRAIN),
    P.ModelLoaded(base="/models/tiny", family="sd1", device="cpu", dtype="float32"),
    P.Finished(status=P.JobStatus.DONE),
    P.Finished(status=P.JobStatus.FAILED, error=P.JobError(P.ErrorKind.DISK_FULL, "Disk full", "trace")),
    Progress(step=3, total=10, phase=Phase.TRAINING, eta_s=4.5, loss=0.125, lr=1e-4, message="step 3"),
    Progress(step=0, total=0, phase=Phase.LOADING),
    ImageReady(path="/out/a.png", step=7, meta={"seed": 3, "prompt": "a fox"}),
    ImageReady(path="/out/b.png"),
    ArtifactSaved(path="/runs/x", kind=ArtifactKind.RUN),
    ArtifactSaved(path="/runs/x/x-step000004.safetensors", kind=ArtifactKind.CHECKPOINT, step=4),
    ArtifactSaved(
        path="/d/a.txt", kind=ArtifactKind.CAPTION, details={"image": "/d/a.png", "caption": "a fox", "previous": ""}
    ),
    LogLine("skipped a.png: not a picture", LogLevel.WARNING, details={"image": "/d/a.png"}),
    LogLine("hello"),
]


@pytest.mark.parametrize("ev", EVERY_EVENT, ids=lambda ev: type(ev).__name__)
@pytest.mark.parametrize("job", ["job-1", None])
def test_every_event_type_round_trips(ev, job):
    line = P.encode_event(job, ev)
    assert line.endswith("\n") and line.count("\n") == 1
    assert P.decode_event(line) == (job, ev)
    assert P.typed_event(P.parse_event(line)) == (job, ev)


def test_every_event_type_is_covered():
    assert {P._event_fields(ev)[0] for ev in EVERY_EVENT} == set(P.EventType)


@pytest.mark.parametrize(
    "line, expected",
    [
        # what workers and the fake worker sent before events were typed
        ('{"type":"progress","job":"g","step":2,"total":4,"eta_s":1.5}', Progress(step=2, total=4, eta_s=1.5)),
        (
            '{"type":"progress","job":"g","step":0,"total":1,"eta_s":null,"message":"loading x"}',
            Progress(step=0, total=1, message="loading x"),
        ),
        ('{"type":"image","job":"g","path":"/x.png","meta":{"seed":3}}', ImageReady(path="/x.png", meta={"seed": 3})),
        (
            '{"type":"artifact","job":"b","path":"/a.safetensors","kind":"adapter","rank":4,"exact":true,'
            '"relative_error":0.0,"layers":12}',
            ArtifactSaved(
                path="/a.safetensors",
                kind=ArtifactKind.ADAPTER,
                details={"rank": 4, "exact": True, "relative_error": 0.0, "layers": 12},
            ),
        ),
        (
            '{"type":"log","job":"c","level":"info","message":"2 written","written":2,"skipped":0,"kept":1}',
            LogLine("2 written", details={"written": 2, "skipped": 0, "kept": 1}),
        ),
        ('{"type":"accepted","job":"g"}', P.Accepted()),
        (
            '{"type":"finished","job":"g","status":"cancelled","error":{"kind":"cancelled","message":"cancelled",'
            '"detail":""}}',
            P.Finished(P.JobStatus.CANCELLED, P.JobError(P.ErrorKind.CANCELLED, "cancelled")),
        ),
        (
            '{"type":"hello","job":null,"device":"cpu","torch":"fake","diffusers":"fake","cuda_name":null,"protocol":1}',
            P.Hello(device="cpu", torch="fake", diffusers="fake", protocol=1),
        ),
    ],
)
def test_old_format_lines_still_decode(line, expected):
    assert P.decode_event(line)[1] == expected


def test_wire_field_names_are_unchanged():
    """An old GUI reads these exact names; new fields (phase) are added, none renamed."""
    progress = json.loads(P.encode_event("t", Progress(step=1, total=2, phase=Phase.CACHING, message="caching")))
    assert progress == {
        "type": "progress",
        "job": "t",
        "step": 1,
        "total": 2,
        "eta_s": None,
        "phase": "caching",
        "message": "caching",
    }
    caption = json.loads(
        P.encode_event(
            "c", ArtifactSaved("/d/a.txt", ArtifactKind.CAPTION, details={"image": "/d/a.png", "caption": "x"})
        )
    )
    assert caption == {
        "type": "artifact",
        "job": "c",
        "path": "/d/a.txt",
        "kind": "caption",
        "image": "/d/a.png",
        "caption": "x",
    }
    failed = P.Finished(P.JobStatus.FAILED, P.JobError(P.ErrorKind.BAD_INPUT, "bad", "detail"))
    assert P.encode_event("a", failed) == P.encode(
        P.finished("a", P.JobStatus.FAILED, P.error(P.ErrorKind.BAD_INPUT, "bad", "detail"))
    )


@pytest.mark.parametrize(
    "line, reason",
    [
        ('{"type":"artifact","job":"a","path":"/x","kind":"sculpture"}', "unknown kind"),
        ('{"type":"artifact","job":"a","kind":"adapter"}', "without a 'path'"),
        ('{"type":"finished","job":"a","status":"meh"}', "unknown status"),
        ('{"type":"sparkle","job":null}', "unknown event type"),
    ],
)
def test_lines_that_are_not_events_raise_protocol_error(line, reason):
    with pytest.raises(P.ProtocolError, match=reason):
        P.decode_event(line)


def test_fields_of_the_wrong_type_read_as_absent():
    job, ev = P.decode_event(
        '{"type":"progress","job":"g","step":"two","total":true,"eta_s":"soon","phase":"dancing","message":null}'
    )
    assert (job, ev) == ("g", Progress(step=0, total=0))
    _job, log = P.decode_event('{"type":"log","job":"g","level":"shout","message":"hi"}')
    assert log == LogLine("hi", LogLevel.INFO)


def test_details_cannot_shadow_the_events_own_fields():
    with pytest.raises(ValueError, match="'kind'"):
        P.encode_event("a", ArtifactSaved("/x", ArtifactKind.ADAPTER, details={"kind": "other"}))
