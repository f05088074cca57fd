"""JSON-lines protocol between the GUI and the worker process.

Pure Python (no Qt, no torch): both sides import it. One JSON object per line.
stdout of the worker carries protocol lines only; every log goes to stderr.

Commands (GUI -> worker)::

    {"cmd": "submit", "job": {"id": "...", "kind": "generate", ...params}}
    {"cmd": "cancel", "id": "..."}
    {"cmd": "request", "id": "...", "action": "checkpoint" | "sample"}   # to a running job
    {"cmd": "ping"}
    {"cmd": "shutdown"}

Events (worker -> GUI) always carry ``type`` and ``job`` (a job id or null); see
:class:`EventType` for the set and DESIGN.md section 2 for their fields.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from app.core.errors import ErrorKind  # noqa: F401 - part of the protocol

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


class JobKind(str, Enum):
    LOAD_MODEL = "load_model"
    GENERATE = "generate"
    TRAIN = "train"
    CAPTION = "caption"
    BAKE = "bake"
    CONVERT = "convert"  # rewrite an adapter file in another layout (the row's "Save as…")


class EventType(str, Enum):
    HELLO = "hello"  # {device, torch, diffusers, cuda_name, protocol}
    PONG = "pong"  # answer to ping, job null
    ACCEPTED = "accepted"  # the job was queued
    PROGRESS = "progress"  # {step, total, eta_s, loss?, lr?, message?}
    IMAGE = "image"  # {path, step?, meta}
    ARTIFACT = "artifact"  # {path, kind}
    MODEL = "model"  # what the worker holds now: {base, family, device, dtype}
    LOG = "log"  # {level, message}
    FINISHED = "finished"  # {status, error?: {kind, message, detail}}


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


def request(job_id: str, action: RequestAction | str) -> dict[str, Any]:
    return {"cmd": CommandName.REQUEST.value, "id": job_id, "action": RequestAction(action).value}


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
    return obj


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
    obj = _decode_object(line)
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
