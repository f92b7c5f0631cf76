"""Message types, their content fields, and validation shared by engine and clients.

Each request type has a schema: field -> (accepted types, required). Validation
checks types and ranges and ignores fields it does not know, so a newer minor
version can add fields without breaking older peers. Pixel arrays are described
in content by {"buffer", "shape", "dtype"} and travel as raw buffers.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from longanim.protocol.wire import Message

# Requests (client -> engine); each gets "<name>_reply" with the request as parent.
HELLO = "hello_request"
CAPABILITIES = "capabilities_request"
SUBMIT = "submit_request"
APPEND = "append_request"
CANCEL = "cancel_request"
STATUS = "status_request"
REATTACH = "reattach_request"
PING = "ping_request"
SHUTDOWN = "shutdown_request"
REQUESTS = (HELLO, CAPABILITIES, SUBMIT, APPEND, CANCEL, STATUS, REATTACH, PING, SHUTDOWN)

# Events (engine -> client); parent is the submit request of their job.
PROGRESS = "progress"
RESULT = "result"
DONE = "job_done"
EVENTS = (PROGRESS, RESULT, DONE)

# Reply to a message whose type could not even be read.
ERROR = "error"

JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")
DTYPES = {"uint8": 1, "uint16": 2, "float32": 4}
MAX_SIDE = 32768
MAX_FRAME_NUMBER = 10**9
MAX_DEPTH = 32  # nesting of maps and lists in a request's content
MAX_LABEL = 1024  # characters of a job label
MAX_CHECKPOINT_EVERY = 10**6  # frames between checkpoints of a path job (0: none)
CHECKPOINT_FIELDS = ("resume", "checkpoint_every")  # of a path job's output (protocol 1.2)


def reply_type(request_type: str) -> str:
    return request_type[: -len("_request")] + "_reply" if request_type.endswith("_request") else ERROR


class ProtocolError(Exception):
    """A request the engine refuses; `code` and message go into the error reply."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code

    def as_content(self) -> dict:
        return {"status": "error", "error": {"code": self.code, "message": str(self)}}


def invalid(message: str) -> ProtocolError:
    return ProtocolError("invalid_content", message)


_INT = (int,)
_STR = (str,)
_BOOL = (bool,)
_MAP = (dict,)
_LIST = (list,)
_OPT_STR = (str, type(None))

SCHEMAS: dict[str, dict[str, tuple[tuple, bool]]] = {
    HELLO: {"protocol_version": (_STR, True), "client": (_STR, False)},
    CAPABILITIES: {},
    SUBMIT: {
        "backend": (_STR, True),
        "options": (_MAP, False),
        "input": (_MAP, True),
        "keyframes": (_LIST, False),
        "refs": (_LIST, False),
        "output": (_MAP, False),
        "cache": (_BOOL, False),
        "confidence": (_BOOL, False),
        "label": (_STR, False),
    },
    APPEND: {"job_id": (_STR, True), "frames": (_LIST, True), "more": (_BOOL, True)},
    CANCEL: {"job_id": (_STR, True)},
    STATUS: {"job_id": (_OPT_STR, False), "all": (_BOOL, False), "token": (_STR, False)},
    REATTACH: {"job_id": (_STR, True), "resend": (_BOOL, False)},
    PING: {},
    SHUTDOWN: {"token": (_STR, True)},
}


def check_fields(content: dict, schema: dict[str, tuple[tuple, bool]], where: str) -> None:
    for name, (types, required) in schema.items():
        if name not in content:
            if required:
                raise invalid(f"{where}: missing field {name!r}")
            continue
        value = content[name]
        if isinstance(value, bool) and bool not in types:
            ok = False  # bool is an int in Python, but not on the wire
        else:
            ok = isinstance(value, types)
        if not ok:
            names = "/".join("nil" if t is type(None) else t.__name__ for t in types)
            raise invalid(f"{where}: field {name!r} must be {names}, got {_type_name(value)}")


def _type_name(value: Any) -> str:
    return "nil" if value is None else type(value).__name__


def validate_request(msg: Message) -> dict:
    """Check a request's content against its schema; returns the content."""
    if msg.msg_type not in SCHEMAS:
        raise ProtocolError("unknown_msg_type", f"unknown request type {msg.msg_type[:60]!r}")
    check_depth(msg.content, MAX_DEPTH, msg.msg_type)
    check_fields(msg.content, SCHEMAS[msg.msg_type], msg.msg_type)
    label = msg.content.get("label")
    if isinstance(label, str) and len(label) > MAX_LABEL:
        raise invalid(f"{msg.msg_type}: label is {len(label)} characters; at most {MAX_LABEL}")
    if msg.msg_type == SUBMIT:
        validate_submit(msg)
    elif msg.msg_type == APPEND:
        check_inline_frames(msg.content["frames"], msg.buffers, "append_request.frames")
    return msg.content


def validate_submit(msg: Message) -> None:
    content = msg.content
    inp = content["input"]
    kind = inp.get("kind")
    if kind == "inline":
        check_fields(inp, {"frames": (_LIST, True), "more": (_BOOL, False)}, "input")
        check_inline_frames(inp["frames"], msg.buffers, "input.frames")
        if not inp["frames"] and not inp.get("more"):
            raise invalid("input.frames is empty and more is false: nothing to colorize")
        for i, kf in enumerate(content.get("keyframes", [])):
            where = f"keyframes[{i}]"
            if not isinstance(kf, dict):
                raise invalid(f"{where} must be a map")
            check_fields(kf, {"number": (_INT, True), "color": (_MAP, True), "lineart": ((dict, type(None)), False),
                              "alpha": ((dict, type(None)), False)}, where)
            check_number(kf["number"], f"{where}.number")
            check_array(kf["color"], msg.buffers, f"{where}.color")
            if kf.get("lineart") is not None:
                check_array(kf["lineart"], msg.buffers, f"{where}.lineart")
            if kf.get("alpha") is not None:
                check_array(kf["alpha"], msg.buffers, f"{where}.alpha")
        if content.get("refs"):
            raise invalid("refs (keyframe paths) need a path input; send keyframes inline")
    elif kind == "path":
        check_fields(inp, {"lineart": (_STR, True), "frames": ((list, type(None)), False), "allow_gaps": (_BOOL, False)},
                     "input")
        rng = inp.get("frames")
        if rng is not None:
            if len(rng) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in rng):
                raise invalid("input.frames must be [first, last] integers or nil")
            check_number(rng[0], "input.frames[0]")
            check_number(rng[1], "input.frames[1]")
            if rng[0] > rng[1]:
                raise invalid(f"input.frames: first {rng[0]} is after last {rng[1]}")
        for i, ref in enumerate(content.get("refs", [])):
            if not isinstance(ref, dict):
                raise invalid(f"refs[{i}] must be a map")
            check_fields(ref, {"path": (_STR, True), "frame": ((int, type(None)), False)}, f"refs[{i}]")
            if ref.get("frame") is not None:
                check_number(ref["frame"], f"refs[{i}].frame")
        if content.get("keyframes"):
            raise invalid("inline keyframes need an inline input; send refs as paths")
    else:
        raise invalid(f"input.kind must be 'inline' or 'path', got {kind!r:.40}")
    out = content.get("output", {"kind": "inline"})
    okind = out.get("kind")
    if okind == "path":
        check_fields(out, {"path": (_STR, True), "ext": (_OPT_STR, False), "resume": (_BOOL, False),
                           "checkpoint_every": (_INT, False)}, "output")
        every = out.get("checkpoint_every", 0)
        if not 0 <= every <= MAX_CHECKPOINT_EVERY:
            raise invalid(f"output.checkpoint_every must be 0 (no checkpoints) to {MAX_CHECKPOINT_EVERY} frames, "
                          f"got {every}")
    elif okind != "inline":
        raise invalid(f"output.kind must be 'inline' or 'path', got {okind!r:.40}")
    if okind != "path" and any(name in out for name in CHECKPOINT_FIELDS):
        raise invalid("output.resume and output.checkpoint_every need a path output: the checkpoint is a file in "
                      "the output folder")
    if okind == "path" and kind != "path":
        raise invalid("output to a path needs a path input (inline input gets inline output)")
    if kind == "path" and okind != "path":
        raise invalid("a path input needs output.kind 'path' with the output directory")
    for key, value in content.get("options", {}).items():
        if not isinstance(key, str):
            raise invalid("options keys must be strings")


def check_depth(value: Any, limit: int, where: str) -> None:
    """Maps and lists nested deeper than `limit` are refused before anything walks them
    recursively (digests, JSON, logging would hit Python's recursion limit)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= limit:
                raise invalid(f"{where}: content is nested deeper than {limit} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def check_number(value: Any, where: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or abs(value) > MAX_FRAME_NUMBER:
        raise invalid(f"{where} must be an integer frame number within +-{MAX_FRAME_NUMBER}")


def check_inline_frames(frames: list, buffers: Sequence, where: str) -> None:
    seen = set()
    for i, fr in enumerate(frames):
        if not isinstance(fr, dict):
            raise invalid(f"{where}[{i}] must be a map")
        check_fields(fr, {"number": (_INT, True), "array": (_MAP, True)}, f"{where}[{i}]")
        check_number(fr["number"], f"{where}[{i}].number")
        if fr["number"] in seen:
            raise invalid(f"{where}: frame {fr['number']} appears twice")
        seen.add(fr["number"])
        check_array(fr["array"], buffers, f"{where}[{i}].array")


def check_array(desc: Any, buffers: Sequence, where: str) -> None:
    """An array descriptor must match its buffer's size exactly."""
    if not isinstance(desc, dict):
        raise invalid(f"{where} must be an array descriptor map")
    check_fields(desc, {"buffer": (_INT, True), "shape": (_LIST, True), "dtype": (_STR, True)}, where)
    index, shape, dtype = desc["buffer"], desc["shape"], desc["dtype"]
    if not 0 <= index < len(buffers):
        raise invalid(f"{where}.buffer {index} does not exist (message has {len(buffers)} buffers)")
    if dtype not in DTYPES:
        raise invalid(f"{where}.dtype {dtype!r:.40} is not one of {sorted(DTYPES)}")
    if len(shape) not in (2, 3) or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise invalid(f"{where}.shape must be [height, width] or [height, width, channels]")
    if not all(1 <= s <= MAX_SIDE for s in shape[:2]) or (len(shape) == 3 and shape[2] not in (1, 3, 4)):
        raise invalid(f"{where}.shape {shape} is out of range (sides 1..{MAX_SIDE}, channels 1, 3 or 4)")
    expected = math.prod(shape) * DTYPES[dtype]
    got = memoryview(buffers[index]).nbytes
    if got != expected:
        raise invalid(f"{where}: buffer {index} has {got} bytes; shape {shape} {dtype} needs {expected}")


def array_desc(array: Any, buffers: list) -> dict:
    """Append a C-contiguous numpy array to `buffers` and describe it (no copy when contiguous)."""
    import numpy as np

    array = np.ascontiguousarray(array)
    if array.dtype.name not in DTYPES:
        raise ValueError(f"arrays must be one of {sorted(DTYPES)}, got {array.dtype}")
    buffers.append(array)
    return {"buffer": len(buffers) - 1, "shape": list(array.shape), "dtype": array.dtype.name}


def array_from(desc: dict, buffers: Sequence):
    """The numpy view of a described buffer, without a copy (read-only)."""
    import numpy as np

    data = buffers[desc["buffer"]]
    array = np.frombuffer(data, dtype=np.dtype(desc["dtype"])).reshape(desc["shape"])
    array.flags.writeable = False
    return array


def error_content(code: str, message: str) -> dict:
    return {"status": "error", "error": {"code": code, "message": message}}
