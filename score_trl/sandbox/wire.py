"""Values across the sandbox's boundary: builtin data only, as tagged JSON, with bounded depth and size.

The only thing a test ever compares is a value decoded here on the trusted side: None, bool, int, float (nan and
infinities too), complex, str, bytes, and tuples, lists, dicts, sets and frozensets of them. No object of the model's
making crosses, so no `__eq__`, `__hash__` or `__abs__` of its choosing runs where the verdict is made.

This module runs on both sides of the boundary (the sandbox sees a copy): standard library only. Messages are JSON,
parsed by CPython's C scanner (`_json`, what `json` itself uses) without importing `json`, whose `re` and `enum`
cost each interpreter start 7 ms, about a tenth of a whole run; elsewhere (`_json` absent), `json` does it.
"""

import os
import struct


try:
    from _json import encode_basestring_ascii as _quote
    from _json import make_scanner as _make_scanner
except ImportError:  # not CPython
    from json import dumps as _json_dumps
    from json import loads as _json_loads

    _make_scanner = None


MAX_DEPTH = 64  # decoding allows less nesting than encoding, so anything decoded can be sent back
_HEADER = struct.Struct(">I")


class WireError(ValueError):
    """A value that cannot cross: not builtin data, too deep, too large, or malformed."""


def encode(value, depth: int = 0):
    if depth > MAX_DEPTH + 8:
        raise WireError("nested too deeply")
    kind = type(value)
    if value is None:
        return ["N"]
    if kind is bool:
        return ["b", value]
    if kind is int:
        return ["i", str(value)]
    if kind is float:
        return ["f", repr(value)]
    if kind is complex:
        return ["c", repr(value.real), repr(value.imag)]
    if kind is str:
        return ["s", value]
    if kind is bytes:
        return ["y", value.hex()]
    tags = {tuple: "t", list: "l", set: "S", frozenset: "F"}
    if kind in tags:
        return [tags[kind], [encode(item, depth + 1) for item in value]]
    if kind is dict:
        return ["d", [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]]
    raise WireError(f"a {kind.__name__} is not builtin data")


def decode(data, depth: int = 0):
    if depth > MAX_DEPTH:
        raise WireError("nested too deeply")
    if type(data) is not list or not data or type(data[0]) is not str:
        raise WireError("malformed value")
    tag, rest = data[0], data[1:]
    try:
        if tag == "N" and not rest:
            return None
        if tag == "b" and type(rest[0]) is bool:
            return rest[0]
        if tag == "i":
            return int(_text(rest[0]))
        if tag == "f":
            return float(_text(rest[0]))
        if tag == "c":
            return complex(float(_text(rest[0])), float(_text(rest[1])))
        if tag == "s":
            return _text(rest[0])
        if tag == "y":
            return bytes.fromhex(_text(rest[0]))
        if tag in ("t", "l", "S", "F") and type(rest[0]) is list:
            items = [decode(item, depth + 1) for item in rest[0]]
            return {"t": tuple, "l": list, "S": set, "F": frozenset}[tag](items)
        if tag == "d" and type(rest[0]) is list:
            pairs = [(decode(p[0], depth + 1), decode(p[1], depth + 1)) for p in rest[0] if _pair(p)]
            if len(pairs) != len(rest[0]):
                raise WireError("malformed dict")
            return dict(pairs)
    except (IndexError, TypeError, ValueError, OverflowError) as error:  # unhashable keys, bad numbers
        raise WireError(f"malformed value: {error}") from None
    raise WireError(f"malformed value (tag {tag!r})")


def _text(value) -> str:
    if type(value) is not str:
        raise WireError("malformed value")
    return value


def _pair(item) -> bool:
    return type(item) is list and len(item) == 2


class _Strict:
    """What the C scanner reads of a `json.JSONDecoder`: plain JSON, no hooks; NaN and Infinity are not values."""

    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int

    @staticmethod
    def parse_constant(name: str):
        raise WireError(f"{name} is not a message value")


_scan = _make_scanner(_Strict()) if _make_scanner else None


def dumps(message) -> str:
    """A message (lists, str, bool, None, int: what `encode` and the protocol make) as compact JSON."""
    if _scan is None:
        return _json_dumps(message, separators=(",", ":"))
    kind = type(message)
    if kind is str:
        return _quote(message)
    if kind is list:
        return "[" + ",".join(map(dumps, message)) + "]"
    if message is None:
        return "null"
    if kind is bool:
        return "true" if message else "false"
    if kind is int:
        return int.__repr__(message)
    raise WireError(f"a {kind.__name__} is not a message value")


def loads(text: str):
    """The message in `text`, which must be one JSON value and nothing else."""
    if _scan is None:
        return _json_loads(text)
    try:
        message, end = _scan(text, 0)
    except StopIteration:  # what the scanner raises where no value starts
        raise WireError("malformed message") from None
    if end != len(text):
        raise WireError("malformed message: data after the value")
    return message


def send(fd: int, message) -> None:
    body = dumps(message).encode()
    data = _HEADER.pack(len(body)) + body
    while data:
        data = data[os.write(fd, data) :]


def receive(fd: int, limit: int):
    """The next message on `fd`; EOFError when the other side is gone, WireError when it broke the protocol."""
    size = _HEADER.unpack(_read_exactly(fd, _HEADER.size))[0]
    if size > limit:
        raise WireError(f"a message of {size} bytes is over the {limit}-byte limit")
    try:
        return loads(_read_exactly(fd, size).decode("utf-8"))
    except (ValueError, RecursionError) as error:  # WireError, UnicodeDecodeError, the scanner's JSONDecodeError
        raise WireError(f"malformed message: {error}") from None


def _read_exactly(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
