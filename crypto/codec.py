"""TLS presentation language (RFC 8446 §3) with MLS variable-length vectors (RFC 9420 §2.1.2).

Structs are dataclasses whose field annotations carry their wire codec
(``Annotated[int, U16]``); variant structs (``select`` in the RFC) write their own
``encode_into``/``decode_from``. Decoding is strict: trailing bytes, non-minimal varints
and truncated input raise ``DecodeError``, so a malformed frame never reaches the group.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import struct as _struct
import typing
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Generic, Self, TypeVar

from crypto.errors import DecodeError

T = TypeVar("T")

_MAX_VARINT = (1 << 30) - 1


def varint(n: int) -> bytes:
    """Encode the length prefix of an MLS vector (1, 2 or 4 bytes)."""
    if n < 0x40:
        return bytes((n,))
    if n < 0x4000:
        return (n | 0x4000).to_bytes(2, "big")
    if n <= _MAX_VARINT:
        return (n | 0x80000000).to_bytes(4, "big")
    raise ValueError("vector too long for an MLS varint")


def opaque(data: bytes) -> bytes:
    """``opaque data<V>``: a varint length then the bytes."""
    return varint(len(data)) + data


class Reader:
    """A cursor over bytes; every read checks bounds."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def take(self, n: int) -> bytes:
        p = self.pos
        if n < 0 or p + n > self.end:
            raise DecodeError("truncated input")
        self.pos = p + n
        return self.data[p : p + n]

    def u8(self) -> int:
        if self.pos >= self.end:
            raise DecodeError("truncated input")
        v = self.data[self.pos]
        self.pos += 1
        return v

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "big")

    def varint(self) -> int:
        first = self.u8()
        prefix = first >> 6
        if prefix == 0:
            return first
        if prefix == 1:
            v = ((first & 0x3F) << 8) | self.u8()
            if v < 0x40:
                raise DecodeError("non-minimal varint")
            return v
        if prefix == 2:
            v = ((first & 0x3F) << 24) | int.from_bytes(self.take(3), "big")
            if v < 0x4000:
                raise DecodeError("non-minimal varint")
            return v
        raise DecodeError("invalid varint prefix 0b11")

    def opaque(self) -> bytes:
        return self.take(self.varint())

    def vector(self, item: Callable[[Reader], T]) -> list[T]:
        n = self.varint()
        stop = self.pos + n
        if stop > self.end:
            raise DecodeError("truncated vector")
        outer_end, self.end = self.end, stop
        items: list[T] = []
        try:
            while self.pos < stop:
                items.append(item(self))
        finally:
            self.end = outer_end
        if self.pos != stop:
            raise DecodeError("vector element overruns its length")
        return items

    def optional(self, item: Callable[[Reader], T]) -> T | None:
        flag = self.u8()
        if flag == 0:
            return None
        if flag == 1:
            return item(self)
        raise DecodeError("invalid optional flag")

    def done(self) -> None:
        if self.pos != self.end:
            raise DecodeError(f"{self.end - self.pos} trailing bytes")


class Codec(Generic[T]):
    """How one field type goes on the wire."""

    def encode(self, w: bytearray, v: T) -> None:
        raise NotImplementedError

    def decode(self, r: Reader) -> T:
        raise NotImplementedError


class _Uint(Codec[int]):
    def __init__(self, size: int) -> None:
        self.size = size
        self.fmt = {1: ">B", 2: ">H", 4: ">I", 8: ">Q"}[size]

    def encode(self, w: bytearray, v: int) -> None:
        w += _struct.pack(self.fmt, v)

    def decode(self, r: Reader) -> int:
        return int.from_bytes(r.take(self.size), "big")


class _Opaque(Codec[bytes]):
    def encode(self, w: bytearray, v: bytes) -> None:
        w += varint(len(v))
        w += v

    def decode(self, r: Reader) -> bytes:
        return r.opaque()


class Fixed(Codec[bytes]):
    """``opaque data[n]``."""

    def __init__(self, size: int) -> None:
        self.size = size

    def encode(self, w: bytearray, v: bytes) -> None:
        if len(v) != self.size:
            raise ValueError("fixed-size field has the wrong length")
        w += v

    def decode(self, r: Reader) -> bytes:
        return r.take(self.size)


class Vec(Codec[list[T]]):
    """``T items<V>``."""

    def __init__(self, item: Any) -> None:
        self.item: Codec[T] = codec_of(item)

    def encode(self, w: bytearray, v: list[T]) -> None:
        body = bytearray()
        enc = self.item.encode
        for x in v:
            enc(body, x)
        w += varint(len(body))
        w += body

    def decode(self, r: Reader) -> list[T]:
        return r.vector(self.item.decode)


class Opt(Codec[T | None]):
    """``optional<T>``."""

    def __init__(self, item: Any) -> None:
        self.item: Codec[T] = codec_of(item)

    def encode(self, w: bytearray, v: T | None) -> None:
        if v is None:
            w.append(0)
        else:
            w.append(1)
            self.item.encode(w, v)

    def decode(self, r: Reader) -> T | None:
        return r.optional(self.item.decode)


class _StructCodec(Codec[Any]):
    def __init__(self, cls: type[Struct]) -> None:
        self.cls = cls

    def encode(self, w: bytearray, v: Any) -> None:
        v.encode_into(w)

    def decode(self, r: Reader) -> Any:
        return self.cls.decode_from(r)


U8: Codec[int] = _Uint(1)
U16: Codec[int] = _Uint(2)
U32: Codec[int] = _Uint(4)
U64: Codec[int] = _Uint(8)
OPAQUE: Codec[bytes] = _Opaque()


def codec_of(spec: Any) -> Codec[Any]:
    """A codec, or a Struct class standing for its own codec."""
    if isinstance(spec, Codec):
        return spec
    if isinstance(spec, type) and issubclass(spec, Struct):
        return _StructCodec(spec)
    raise TypeError(f"no wire codec for {spec!r}")


_decode_cache = True


@contextlib.contextmanager
def fresh_encoding() -> Iterator[None]:
    """Decode without remembering wire bytes, so re-serializing exercises every encoder."""
    global _decode_cache
    _decode_cache = False
    try:
        yield
    finally:
        _decode_cache = True


class Struct:
    """Base of every wire struct: ``serialize`` and strict ``deserialize``."""

    _fields: ClassVar[tuple[tuple[str, Codec[Any]], ...]] = ()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        own = inspect.get_annotations(cls)
        hints = typing.get_type_hints(cls, include_extras=True) if own else {}
        fields: list[tuple[str, Codec[Any]]] = []
        for name in own:
            hint = hints[name]
            if typing.get_origin(hint) is ClassVar:
                continue
            if typing.get_origin(hint) is typing.Annotated:
                fields.append((name, codec_of(hint.__metadata__[0])))
            elif isinstance(hint, type) and issubclass(hint, Struct):
                fields.append((name, codec_of(hint)))
        if fields:
            cls._fields = tuple(fields)

    def encode_into(self, w: bytearray) -> None:
        wire = self.__dict__.get("_wire")
        if wire is None:
            start = len(w)
            self._encode(w)
            self.__dict__["_wire"] = bytes(w[start:])
        else:
            w += wire

    @classmethod
    def decode_from(cls, r: Reader) -> Self:
        start = r.pos
        v = cls._decode(r)
        if _decode_cache:
            v.__dict__["_wire"] = r.data[start : r.pos]
        return v

    def _encode(self, w: bytearray) -> None:
        for name, c in self._fields:
            c.encode(w, getattr(self, name))

    @classmethod
    def _decode(cls, r: Reader) -> Self:
        return cls(**{name: c.decode(r) for name, c in cls._fields})

    def serialize(self) -> bytes:
        """Wire bytes; cached, since structs are immutable once built or decoded."""
        wire = self.__dict__.get("_wire")
        if wire is None:
            w = bytearray()
            self.encode_into(w)
            wire = self.__dict__["_wire"]
        return wire

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        r = Reader(bytes(data))
        v = cls.decode_from(r)
        r.done()
        return v


def struct(cls: type[T]) -> type[T]:
    """Frozen dataclass whose annotations double as its wire layout.

    Wire bytes are cached on first use, so equality ignores the cache.
    """
    return dataclasses.dataclass(frozen=True, eq=True)(cls)
