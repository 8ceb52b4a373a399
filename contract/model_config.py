"""Triton's ``config.pbtxt`` as the service reads it: names, datatypes and dims of the inputs and
outputs, ``max_batch_size``, ``label_filename`` and the free-form ``parameters``.

Standard library only. The file is protobuf text format (``inference.ModelConfig``); without
Triton's ``.proto`` the parser below reads the format itself into plain values, keeping every
field as a list (the schema, which says which fields repeat, is not at hand), and
``ModelConfig.parse`` picks out the fields the service uses. Everything else in the file
(``instance_group``, ``dynamic_batching``, ``version_policy``...) is read and ignored.

What the service takes from ``parameters`` (each ``{ key: "..." value: { string_value: "..." } }``)
is in ``HINT_KEYS``: the same keys may also be ONNX ``metadata_props`` of the model, and the
configuration wins over the metadata.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEQUENCE_INPUT = "sequence_input"
"""Name of the float sequence input ``[B, T, F]`` (``[T, B, F]`` when time-major)."""
LENGTHS_INPUT = "lengths_input"
"""Name of the integer lengths input ``[B]``; ``none`` for a model that has none."""
SEQUENCE_LAYOUT = "sequence_layout"
"""``batch_major`` (default) or ``time_major``."""
PROBABILITIES_OUTPUT = "probabilities_output"
"""Name of the ``[B, C]`` output holding class probabilities."""
LOGITS_OUTPUT = "logits_output"
"""Name of the ``[B, C]`` output holding class logits (scores before a softmax)."""
HINT_KEYS = (SEQUENCE_INPUT, LENGTHS_INPUT, SEQUENCE_LAYOUT, PROBABILITIES_OUTPUT, LOGITS_OUTPUT)

ONNX_TYPES = {
    "TYPE_BOOL": "tensor(bool)",
    "TYPE_UINT8": "tensor(uint8)",
    "TYPE_INT8": "tensor(int8)",
    "TYPE_INT16": "tensor(int16)",
    "TYPE_INT32": "tensor(int32)",
    "TYPE_INT64": "tensor(int64)",
    "TYPE_FP16": "tensor(float16)",
    "TYPE_FP32": "tensor(float)",
    "TYPE_FP64": "tensor(double)",
}
"""Triton's ``data_type`` names and the ONNX Runtime type string of each."""


class ConfigError(ValueError):
    """``config.pbtxt`` cannot be read, or says something the model contradicts."""


# -- protobuf text format ------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""\s+|\#[^\n]*                              # blanks and comments
      |(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      |(?P<number>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)[fF]?)
      |(?P<word>[A-Za-z_][A-Za-z0-9_.]*)
      |(?P<punct>[{}\[\]:,;<>])""",
    re.VERBOSE,
)
_CLOSING = {"{": "}", "<": ">"}

Message = dict[str, list[Any]]
"""A parsed message: each field name to the list of its values (a value is a ``str``, ``int``,
``float``, ``bool``, an enum name as ``str``, or a nested ``Message``)."""


def _tokens(text: str) -> Iterator[tuple[str, str, int]]:
    """``(kind, text, line)`` of every token; ``ConfigError`` at a character that starts none."""
    position, line = 0, 1
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ConfigError(f"line {line}: unexpected character {text[position]!r}")
        kind = match.lastgroup
        if kind is not None:
            yield kind, match.group(kind), line
        line += match.group(0).count("\n")
        position = match.end()


class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = list(_tokens(text))
        self._at = 0

    def _peek(self) -> tuple[str, str, int] | None:
        return self._tokens[self._at] if self._at < len(self._tokens) else None

    def _next(self, what: str) -> tuple[str, str, int]:
        token = self._peek()
        if token is None:
            raise ConfigError(f"the file ends where {what} was expected")
        self._at += 1
        return token

    def _skip(self, *punct: str) -> bool:
        token = self._peek()
        if token is not None and token[0] == "punct" and token[1] in punct:
            self._at += 1
            return True
        return False

    def message(self, closing: str | None) -> Message:
        fields: Message = {}
        while True:
            token = self._peek()
            if token is None:
                if closing is not None:
                    raise ConfigError(f"the file ends before a closing {closing!r}")
                return fields
            kind, text, line = token
            if kind == "punct" and text == closing:
                self._at += 1
                return fields
            if kind != "word":
                raise ConfigError(f"line {line}: expected a field name, got {text!r}")
            self._at += 1
            has_colon = self._skip(":")
            values = fields.setdefault(text, [])
            if self._skip("["):
                while not self._skip("]"):
                    values.append(self._value(has_colon=True))
                    self._skip(",")
            else:
                values.append(self._value(has_colon))
            self._skip(",", ";")

    def _value(self, has_colon: bool) -> Any:
        kind, text, line = self._next("a value")
        if kind == "punct" and text in _CLOSING:
            return self.message(_CLOSING[text])
        if not has_colon:
            raise ConfigError(f"line {line}: expected ':' or '{{' before {text!r}")
        if kind == "string":
            return _unquote(text)
        if kind == "number":
            number = text.rstrip("fF")
            return float(number) if any(c in number for c in ".eE") else int(number)
        if kind == "word":
            return {"true": True, "false": False}.get(text, text)
        raise ConfigError(f"line {line}: expected a value, got {text!r}")


def _unquote(token: str) -> str:
    body = token[1:-1]
    return body.encode("latin-1", "backslashreplace").decode("unicode_escape")


def parse_text_proto(text: str) -> Message:
    """A protobuf text-format message as plain values (see ``Message``)."""
    return _Parser(text).message(None)


# -- the fields the service uses -----------------------------------------------------------------
@dataclass(frozen=True)
class TensorConfig:
    """One entry of ``input [...]`` or ``output [...]``."""

    name: str
    data_type: str | None
    """Triton's name (``TYPE_FP32``), or None when not given."""
    dims: tuple[int, ...] | None
    """Without the batch axis when ``max_batch_size > 0`` (Triton's rule); -1 where dynamic."""
    label_filename: str | None = None

    def whole_dims(self, batched: bool) -> list[int] | None:
        """The tensor's whole shape: the batch axis (-1) put back first when Triton leaves it
        out (``batched``: ``max_batch_size > 0``)."""
        if self.dims is None:
            return None
        return [-1, *self.dims] if batched else list(self.dims)


@dataclass(frozen=True)
class ModelConfig:
    """What the service reads of a ``config.pbtxt``."""

    name: str | None = None
    platform: str | None = None
    max_batch_size: int = 0
    """Triton's: 0 means the model does not batch (``dims`` are whole shapes); above 0, the
    largest batch and ``dims`` leave the batch axis out."""
    inputs: tuple[TensorConfig, ...] = ()
    outputs: tuple[TensorConfig, ...] = ()
    parameters: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> ModelConfig:
        message = parse_text_proto(text)
        return cls(
            name=_scalar(message, "name", str),
            platform=_scalar(message, "platform", str),
            max_batch_size=_scalar(message, "max_batch_size", int) or 0,
            inputs=tuple(_tensor(m, "input") for m in _messages(message, "input")),
            outputs=tuple(_tensor(m, "output") for m in _messages(message, "output")),
            parameters=_parameters(message),
        )

    @classmethod
    def read(cls, path: Path) -> ModelConfig:
        """The configuration in ``path``; ``ConfigError`` naming the file when it does not parse."""
        try:
            return cls.parse(path.read_text(encoding="utf-8"))
        except (ConfigError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: {error}") from None


def _messages(message: Message, key: str) -> list[Message]:
    values = message.get(key, [])
    if not all(isinstance(v, dict) for v in values):
        raise ConfigError(f"'{key}' must hold messages ({{ ... }})")
    return values


def _scalar(message: Message, key: str, kind: type) -> Any:
    values = message.get(key, [])
    if not values:
        return None
    value = values[-1]  # protobuf text format: the last of a repeated scalar wins
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        what = {str: "a string", int: "an integer", bool: "true or false"}[kind]
        raise ConfigError(f"'{key}' must be {what}, got {value!r}")
    return value


def _tensor(message: Message, kind: str) -> TensorConfig:
    name = _scalar(message, "name", str)
    if not name:
        raise ConfigError(f"an '{kind}' entry has no name")
    dims = message.get("dims")
    if dims is not None and not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        raise ConfigError(f"{kind} {name!r}: dims must be integers, got {dims}")
    data_type = _scalar(message, "data_type", str)
    if data_type is not None and data_type not in ONNX_TYPES:
        raise ConfigError(f"{kind} {name!r}: data_type {data_type} is not one the service knows")
    return TensorConfig(
        name=name,
        data_type=data_type,
        dims=tuple(dims) if dims is not None else None,
        label_filename=_scalar(message, "label_filename", str),
    )


def _parameters(message: Message) -> dict[str, str]:
    parameters = {}
    for entry in _messages(message, "parameters"):
        key = _scalar(entry, "key", str)
        values = _messages(entry, "value")
        if key is None or len(values) != 1:
            raise ConfigError("a 'parameters' entry needs a key and one value { string_value }")
        parameters[key] = _scalar(values[0], "string_value", str) or ""
    return parameters
