"""Worker reports written by hand, in the report format's versions (see `src/distributed/wire.rs`): what a
worker of another release, or one that defines what this release refuses, would send to a master."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

COUNTER, GAUGE, HISTOGRAM = 0, 1, 2
#: The wire code of gauge mode `livesum`.
LIVESUM = 7


@dataclass
class Family:
    name: str
    kind: int
    labels: list[str] = field(default_factory=list)
    #: Label values -> value: a float for a counter, (value, time stamp) for a gauge.
    series: dict[tuple[str, ...], float | tuple[float, float]] = field(default_factory=dict)
    mode: int = 0
    help: str = "by hand"


def uint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def string(s: str) -> bytes:
    data = s.encode()
    return uint(len(data)) + data


def frame(body: bytes, extra: bytes) -> bytes:
    """A length-prefixed frame; `extra` stands for fields a later version appends."""
    return uint(len(body) + len(extra)) + body + extra


def encode(families: list[Family], version: int = 3, extra: bytes = b"") -> bytes:
    """A report in format `version` (2: unframed, the previous release's; 3 and up: framed). With `extra`,
    every frame carries those bytes past the fields this release knows, as a later version's would."""
    framed = version >= 3
    out = b"LPE" + str(version).encode()
    if framed:
        out += frame(string("9.9.9"), extra)
    out += uint(len(families))
    for f in families:
        head = string(f.name) + string(f.help) + bytes([f.kind, f.mode])
        head += uint(len(f.labels)) + b"".join(string(n) for n in f.labels) + uint(0)
        out += frame(head, extra) if framed else head
        out += uint(len(f.series))
        for values, value in f.series.items():
            body = b"".join(string(v) for v in values)
            body += struct.pack("<2d", *value) if isinstance(value, tuple) else struct.pack("<d", value)
            out += frame(body, extra) if framed else body
    return out
