"""Reading a remote-write 1.0 request as a receiver does: snappy (raw, block format) then the `WriteRequest`
protobuf, decoded by hand as far as the tests need (no snappy or protobuf package in the test tools)."""

from __future__ import annotations

from dataclasses import dataclass


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def unsnappy(data: bytes) -> bytes:
    """Decompresses a raw snappy block: a varint length, then literals and back-references."""
    size, at = _varint(data, 0)
    out = bytearray()
    while at < len(data):
        tag = data[at]
        at += 1
        kind = tag & 3
        if kind == 0:  # literal; lengths over 60 follow in 1 to 4 little-endian bytes
            length = tag >> 2
            if length >= 60:
                extra = length - 59
                length = int.from_bytes(data[at : at + extra], "little")
                at += extra
            out += data[at : at + length + 1]
            at += length + 1
            continue
        if kind == 1:
            length, offset = 4 + ((tag >> 2) & 7), ((tag >> 5) << 8) | data[at]
            at += 1
        else:
            width = 2 if kind == 2 else 4
            length, offset = (tag >> 2) + 1, int.from_bytes(data[at : at + width], "little")
            at += width
        for _ in range(length):  # byte by byte: a copy may overlap what it writes
            out.append(out[-offset])
    assert len(out) == size, (len(out), size)
    return bytes(out)


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: varints as ints, length-delimited fields as bytes."""
    fields: list[tuple[int, int | bytes]] = []
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
            fields.append((number, value))
        elif wire == 2:
            length, at = _varint(data, at)
            fields.append((number, data[at : at + length]))
            at += length
        elif wire in (1, 5):  # fixed64 (a double), fixed32
            width = 8 if wire == 1 else 4
            fields.append((number, data[at : at + width]))
            at += width
        else:
            raise ValueError(f"wire type {wire}")
    return fields


@dataclass
class Series:
    labels: dict[str, str]
    samples: int
    histograms: int


def series_of(body: bytes) -> list[Series]:
    """The series of a snappy-compressed `WriteRequest`, with how many float and native histogram samples each has."""
    out = []
    for number, timeseries in _fields(unsnappy(body)):
        assert number == 1 and isinstance(timeseries, bytes)
        labels: dict[str, str] = {}
        samples = histograms = 0
        for field, value in _fields(timeseries):
            if field == 1 and isinstance(value, bytes):
                pair = {n: v for n, v in _fields(value) if isinstance(v, bytes)}
                labels[pair.get(1, b"").decode()] = pair.get(2, b"").decode()
            samples += field == 2
            histograms += field == 4
        out.append(Series(labels, samples, histograms))
    return out


def has_native_histograms(body: bytes) -> bool:
    return any(s.histograms for s in series_of(body))
