"""JSON-lines protocol between the GUI and the worker process.

Pure Python (no Qt, no torch): both sides import it. One JSON object per line.
stdout of the worker carries protocol lines only; every log goes to stderr.

Commands (GUI -> worker)::

    {"cmd": "submit", "job": {"id": "...", "kind": "generate", ...params}}
    {"cmd": "cancel", "id": "..."}
    {"cmd": "request", "id": "...", "action": "checkpoint" | "sample"}   # to a running job
    {"cmd": "request", "id": "...", "action": "try", "prompt": "...", "negative"?: "...", "seed"?: 1}
    {"cmd": "ping"}
    {"cmd": "shutdown"}

Events (worker -> GUI) always carry ``type`` and ``job`` (a job id or null). This module is
the only place that encodes and decodes them: :func:`encode_event` turns a typed event into
a line, :func:`decode_event` (or :func:`typed_event` for an already parsed object) turns a
line back into ``(job id, typed event)``. The events, with their JSON fields::

    hello     Hello          {device, torch, diffusers, cuda_name, protocol, pid}
    pong      Pong           {}                             (answer to ping, job null)
    accepted  Accepted       {kind}                         (the job was queued)
    model     ModelLoaded    {base, family, device, dtype, distilled}  (what the worker holds now)
    progress  Progress       {step, total, eta_s, phase?, loss?, lr?, message?, val_loss?}
    image     ImageReady     {path, step?, meta}
    artifact  ArtifactSaved  {path, kind, step?, ...details}   (kind: ArtifactKind)
    log       LogLine        {level, message, ...details}
    finished  Finished       {status, error?: {kind, message, detail}}

``details`` travel as top-level fields (a caption artifact: image, caption, previous; a baked
adapter: rank, exact, relative_error, layers; a skipped picture's log line: image), as they
always have. Fields a reader does not know are ignored, so new fields can be added.
The job events (Progress, ImageReady, ArtifactSaved, LogLine) are :mod:`app.core.events`,
shared with the engine; the others are defined here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from app.core.errors import ErrorKind  # noqa: F401 - part of the protocol
from app.core.events import ArtifactKind, ArtifactSaved, ImageReady, JobEvent, LogLevel, LogLine, Phase, Progress
from app.core.train_requests import MAX_PROMPT_CHARS, TrainRequest, TryPrompt

PROTOCOL_VERSION = 1


class ProtocolError(ValueError):
    """A line that is not a valid protocol message (logged and ignored by both sides).

    The only error :func:`parse_command` and :func:`parse_event` raise, whatever the line holds."""


class CommandName(str, Enum):
    SUBMIT = "submit"
    CANCEL = "cancel"
    REQUEST = "request"  # ask a running job for something now (a train job: save a checkpoint, render samples)
    PING = "ping"
    SHUTDOWN = "shutdown"


class RequestAction(str, Enum):
    """What a ``request`` command can ask of a running job."""

    CHECKPOINT = "checkpoint"  # save a checkpoint (and the resume state) after the current step
    SAMPLE = "sample"  # render the sample prompts after the current step
    TRY = "try"  # render one prompt (with "prompt", optional "negative" and "seed") after the current step


class JobKind(str, Enum):
    LOAD_MODEL = "load_model"
    GENERATE = "generate"
    TRAIN = "train"
    CAPTION = "caption"
    BAKE = "bake"
    CONVERT = "convert"  # rewrite an adapter file in another layout (the row's "Save as…")
    MASK = "mask"  # automatic loss masks (CLIPSeg) saved as name.mask.png sidecars


class EventType(str, Enum):
    """The ``type`` of an event line; the fields of each are in the module docstring."""

    HELLO = "hello"
    PONG = "pong"
    ACCEPTED = "accepted"
    PROGRESS = "progress"
    IMAGE = "image"
    ARTIFACT = "artifact"
    MODEL = "model"
    LOG = "log"
    FINISHED = "finished"


class JobStatus(str, Enum):
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


# ---------------------------------------------------------------- encoding


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode(message: dict[str, Any]) -> str:
    """One message as one line (with the trailing newline)."""
    text = json.dumps(message, default=_plain, ensure_ascii=False, separators=(",", ":"))
    if "\n" in text:  # json.dumps escapes newlines in strings; this is a guard only
        raise ProtocolError("encoded message contains a newline")
    return text + "\n"


def _decode_object(line: str | bytes) -> dict[str, Any]:
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"not UTF-8: {exc}") from None
    line = line.strip()
    if not line:
        raise ProtocolError("empty line")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON ({exc.msg} at column {exc.colno}): {line[:120]!r}") from None
    except RecursionError:
        raise ProtocolError(f"JSON nested too deeply: {line[:120]!r}") from None
    except ValueError as exc:  # e.g. an integer over Python's 4,300-digit limit
        raise ProtocolError(f"not usable JSON ({str(exc)[:120]}): {line[:120]!r}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"not a JSON object: {line[:120]!r}")
    return obj


# ---------------------------------------------------------------- commands


def submit(job: dict[str, Any]) -> dict[str, Any]:
    return {"cmd": CommandName.SUBMIT.value, "job": job}


def cancel(job_id: str) -> dict[str, Any]:
    return {"cmd": CommandName.CANCEL.value, "id": job_id}


def request(job_id: str, action: RequestAction | str, **fields: Any) -> dict[str, Any]:
    """``fields``: what the action carries (a ``try``: prompt, negative, seed)."""
    return {"cmd": CommandName.REQUEST.value, "id": job_id, "action": RequestAction(action).value, **fields}


def train_request(cmd: dict[str, Any]) -> TrainRequest:
    """A parsed ``request`` command as what the trainer reads (a word, or a :class:`TryPrompt`)."""
    action = RequestAction(cmd["action"])
    if action is not RequestAction.TRY:
        return action.value
    seed = cmd.get("seed")
    return TryPrompt(prompt=cmd["prompt"], negative=str(cmd.get("negative") or ""), seed=seed)


def ping() -> dict[str, Any]:
    return {"cmd": CommandName.PING.value}


def shutdown() -> dict[str, Any]:
    return {"cmd": CommandName.SHUTDOWN.value}


def parse_command(line: str | bytes) -> dict[str, Any]:
    """Validate one command line; raise :class:`ProtocolError` with the reason."""
    obj = _decode_object(line)
    name = obj.get("cmd")
    try:
        cmd = CommandName(name)
    except ValueError:
        raise ProtocolError(f"unknown command {name!r}") from None
    if cmd is CommandName.SUBMIT:
        job = obj.get("job")
        if not isinstance(job, dict):
            raise ProtocolError("submit without a 'job' object")
        if not isinstance(job.get("id"), str) or not job["id"]:
            raise ProtocolError("submitted job has no string 'id'")
        try:
            JobKind(job.get("kind"))
        except ValueError:
            raise ProtocolError(f"unknown job kind {job.get('kind')!r}") from None
    elif cmd is CommandName.CANCEL and not isinstance(obj.get("id"), str):
        raise ProtocolError("cancel without a string 'id'")
    elif cmd is CommandName.REQUEST:
        if not isinstance(obj.get("id"), str):
            raise ProtocolError("request without a string 'id'")
        try:
            RequestAction(obj.get("action"))
        except ValueError:
            choices = ", ".join(repr(a.value) for a in RequestAction)
            raise ProtocolError(f"request with unknown action {obj.get('action')!r} (known: {choices})") from None
        if obj["action"] == RequestAction.TRY.value:
            _check_try(obj)
    return obj


def _check_try(obj: dict[str, Any]) -> None:
    prompt = obj.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
        raise ProtocolError(f"try request without a prompt of 1 to {MAX_PROMPT_CHARS} characters")
    if not isinstance(obj.get("negative", ""), str):
        raise ProtocolError("try request with a negative prompt that is not text")
    seed = obj.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
        raise ProtocolError(f"try request with a seed that is not a whole number from 0: {seed!r}")


# ---------------------------------------------------------------- events


def event(type_: EventType, job: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"type": EventType(type_).value, "job": job, **fields}


def error(kind: ErrorKind, message: str, detail: str = "") -> dict[str, Any]:
    return {"kind": ErrorKind(kind).value, "message": message, "detail": detail}


def finished(job: str, status: JobStatus, err: dict[str, Any] | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {"status": JobStatus(status).value}
    if err is not None:
        fields["error"] = err
    return event(EventType.FINISHED, job, **fields)


def parse_event(line: str | bytes) -> dict[str, Any]:
    """Validate one event line; raise :class:`ProtocolError` with the reason."""
    return _check_event(_decode_object(line))


def _check_event(obj: dict[str, Any]) -> dict[str, Any]:
    try:
        etype = EventType(obj.get("type"))
    except ValueError:
        raise ProtocolError(f"unknown event type {obj.get('type')!r}") from None
    if "job" not in obj or not (obj["job"] is None or isinstance(obj["job"], str)):
        raise ProtocolError(f"{etype.value} event without a 'job' field")
    if etype is EventType.FINISHED:
        try:
            JobStatus(obj.get("status"))
        except ValueError:
            raise ProtocolError(f"finished event with unknown status {obj.get('status')!r}") from None
    if etype in (EventType.IMAGE, EventType.ARTIFACT) and not isinstance(obj.get("path"), str):
        raise ProtocolError(f"{etype.value} event without a 'path'")
    return obj


# ---------------------------------------------------------------- typed events


@dataclass(frozen=True)
class Hello:
    """The worker started; what it runs on (fields a fake or older worker leaves out are None)."""

    device: str | None = None
    torch: str | None = None
    diffusers: str | None = None
    cuda_name: str | None = None
    protocol: int | None = None
    pid: int | None = None


@dataclass(frozen=True)
class Pong:
    """The answer to ``ping`` (job null)."""


@dataclass(frozen=True)
class Accepted:
    """The job was queued."""

    kind: JobKind | None = None


@dataclass(frozen=True)
class ModelLoaded:
    """What the worker holds now (``family`` is a Family value, ``base`` the source asked for)."""

    base: str | None = None
    family: str | None = None
    device: str | None = None
    dtype: str | None = None
    distilled: bool = False  # the family's timestep-distilled model (Flux.1 [schnell]): guidance is ignored


@dataclass(frozen=True)
class JobError:
    """Why a job failed or was cancelled: one of a closed set of kinds, one sentence, a trace."""

    kind: ErrorKind
    message: str
    detail: str = ""


@dataclass(frozen=True)
class Finished:
    """The last event of every job."""

    status: JobStatus
    error: JobError | None = None


WorkerEvent = Hello | Pong | Accepted | ModelLoaded | Finished | JobEvent
_RESERVED = frozenset({"type", "job"})


def _event_fields(ev: WorkerEvent) -> tuple[EventType, dict[str, Any]]:
    """The ``type`` and the JSON fields of a typed event (optional fields only when set)."""
    if isinstance(ev, Progress):
        fields = {"step": ev.step, "total": ev.total, "eta_s": ev.eta_s}
        optional = {
            "phase": ev.phase,
            "loss": ev.loss,
            "lr": ev.lr,
            "message": ev.message or None,
            "val_loss": ev.val_loss,
        }
        return EventType.PROGRESS, {**fields, **{k: v for k, v in optional.items() if v is not None}}
    if isinstance(ev, ImageReady):
        step = {} if ev.step is None else {"step": ev.step}
        return EventType.IMAGE, {"path": ev.path, **step, "meta": dict(ev.meta)}
    if isinstance(ev, ArtifactSaved):
        step = {} if ev.step is None else {"step": ev.step}
        return EventType.ARTIFACT, {
            **_details(ev.details, "path", "kind", "step"),
            "path": ev.path,
            "kind": ArtifactKind(ev.kind),
            **step,
        }
    if isinstance(ev, LogLine):
        return EventType.LOG, {
            **_details(ev.details, "level", "message"),
            "level": LogLevel(ev.level),
            "message": ev.message,
        }
    if isinstance(ev, Finished):
        err = {} if ev.error is None else {"error": error(ev.error.kind, ev.error.message, ev.error.detail)}
        return EventType.FINISHED, {"status": JobStatus(ev.status), **err}
    if isinstance(ev, Accepted):
        return EventType.ACCEPTED, {} if ev.kind is None else {"kind": JobKind(ev.kind)}
    if isinstance(ev, Hello):
        return EventType.HELLO, dict(vars(ev))
    if isinstance(ev, ModelLoaded):
        return EventType.MODEL, dict(vars(ev))
    if isinstance(ev, Pong):
        return EventType.PONG, {}
    raise TypeError(f"{type(ev).__name__} is not a protocol event")


def _details(details: dict[str, Any], *own: str) -> dict[str, Any]:
    clash = (_RESERVED | set(own)) & set(details)
    if clash:
        raise ValueError(f"event details may not be named {sorted(clash)[0]!r} (a field of the event itself)")
    return dict(details)


def event_message(job: str | None, ev: WorkerEvent) -> dict[str, Any]:
    """A typed event as the JSON object that goes on the wire."""
    etype, fields = _event_fields(ev)
    return event(etype, job, **fields)


def encode_event(job: str | None, ev: WorkerEvent) -> str:
    """A typed event as one protocol line (with the trailing newline)."""
    return encode(event_message(job, ev))


def decode_event(line: str | bytes) -> tuple[str | None, WorkerEvent]:
    """One event line as ``(job id or None, typed event)``; :class:`ProtocolError` if it is not one."""
    return typed_event(parse_event(line))


def typed_event(obj: dict[str, Any]) -> tuple[str | None, WorkerEvent]:
    """An event object (as :func:`parse_event` returns it) as ``(job id or None, typed event)``.

    Fields of the wrong type read as absent, as readers always treated them; a missing ``type``,
    ``job``, ``path`` or an unknown status or artifact kind raises :class:`ProtocolError`."""
    _check_event(obj)
    return obj["job"], _DECODERS[EventType(obj["type"])](obj)


def _int(value: Any, default: int | None = 0) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _enum(enum: type[Enum], value: Any, default: Any = None) -> Any:
    try:
        return enum(value)
    except ValueError:
        return default


def _extra(obj: dict[str, Any], *own: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in _RESERVED and k not in own}


def _progress(obj: dict[str, Any]) -> Progress:
    return Progress(
        step=_int(obj.get("step")),
        total=_int(obj.get("total")),
        phase=_enum(Phase, obj.get("phase")),
        eta_s=_float(obj.get("eta_s")),
        loss=_float(obj.get("loss")),
        lr=_float(obj.get("lr")),
        message=str(obj.get("message") or ""),
        val_loss=_float(obj.get("val_loss")),
    )


def _image(obj: dict[str, Any]) -> ImageReady:
    meta = obj.get("meta")
    return ImageReady(path=obj["path"], step=_int(obj.get("step"), None), meta=meta if isinstance(meta, dict) else {})


def _artifact(obj: dict[str, Any]) -> ArtifactSaved:
    kind = _enum(ArtifactKind, obj.get("kind"))
    if kind is None:
        raise ProtocolError(f"artifact event with unknown kind {obj.get('kind')!r}")
    return ArtifactSaved(
        path=obj["path"], kind=kind, step=_int(obj.get("step"), None), details=_extra(obj, "path", "kind", "step")
    )


def _log(obj: dict[str, Any]) -> LogLine:
    return LogLine(
        message=str(obj.get("message", "")),
        level=_enum(LogLevel, obj.get("level"), LogLevel.INFO),
        details=_extra(obj, "level", "message"),
    )


def _finished(obj: dict[str, Any]) -> Finished:
    err = obj.get("error")
    job_error = None
    if isinstance(err, dict):
        job_error = JobError(
            kind=_enum(ErrorKind, err.get("kind", "internal"), ErrorKind.INTERNAL),
            message=str(err.get("message", "")),
            detail=str(err.get("detail", "")),
        )
    return Finished(status=JobStatus(obj["status"]), error=job_error)


def _hello(obj: dict[str, Any]) -> Hello:
    return Hello(
        device=_str(obj.get("device")),
        torch=_str(obj.get("torch")),
        diffusers=_str(obj.get("diffusers")),
        cuda_name=_str(obj.get("cuda_name")),
        protocol=_int(obj.get("protocol"), None),
        pid=_int(obj.get("pid"), None),
    )


def _model(obj: dict[str, Any]) -> ModelLoaded:
    return ModelLoaded(
        base=_str(obj.get("base")),
        family=_str(obj.get("family")),
        device=_str(obj.get("device")),
        dtype=_str(obj.get("dtype")),
        distilled=obj.get("distilled") is True,
    )


_DECODERS = {
    EventType.HELLO: _hello,
    EventType.PONG: lambda obj: Pong(),
    EventType.ACCEPTED: lambda obj: Accepted(kind=_enum(JobKind, obj.get("kind"))),
    EventType.MODEL: _model,
    EventType.PROGRESS: _progress,
    EventType.IMAGE: _image,
    EventType.ARTIFACT: _artifact,
    EventType.LOG: _log,
    EventType.FINISHED: _finished,
}
