"""The device-string grammar, parsed once at the boundary into frozen dataclasses.

::

    device  := hw | "AUTO" [":" alist] | "MULTI" ":" alist | "HETERO" ":" hlist | "BATCH" ":" bdev
    hw      := NAME ["." ID] ["@" NODE]         CPU, GPU.1, GPU.1@node-2 (NAME is case-sensitive)
    alist   := aitem {"," aitem}                left = highest priority; no spaces
    aitem   := ["-"] hw ["(" N ")"]             "-" excludes (AUTO only); N > 0 worker requests
    hlist   := hitem {"," hitem}                order = priority, the last is the fallback
    hitem   := hw | "AUTO" ":" alist | "BATCH" ":" bdev
    bdev    := hw ["(" B ")"]                   B > 0 = batch size

``AUTO`` inside a HETERO list takes the rest of the list (``HETERO:AUTO:GPU,CPU`` is HETERO over
one AUTO device); ``BATCH`` takes exactly one device (``HETERO:BATCH:GPU(8),CPU`` is HETERO over
``BATCH:GPU(8)`` and ``CPU``).  Every malformed string is rejected with a message that quotes it
and points at the fault.

>>> parse_device("HETERO:BATCH:GPU(8),CPU")
Virtual(kind='HETERO', items=(Item(device=Batch(device=Hardware(name='GPU', id='', node=''), batch=8), ...
"""

from __future__ import annotations

import dataclasses
import re
from typing import Union

from infermux.errors import InvalidDeviceStringError

__all__ = ["Hardware", "Batch", "Item", "Virtual", "Device", "parse_device", "format_device",
           "VIRTUAL_KINDS"]

VIRTUAL_KINDS = ("AUTO", "MULTI", "HETERO", "BATCH")
_HW = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z0-9_]+))?(?:@([A-Za-z0-9_.\-]+))?")
_COUNT = re.compile(r"\(([^()]*)\)")


@dataclasses.dataclass(frozen=True)
class Hardware:
    """A physical device: ``GPU.1@node-2`` -> name GPU, id '1', node 'node-2'."""

    name: str
    id: str = ""
    node: str = ""

    def __str__(self) -> str:
        return self.name + (f".{self.id}" if self.id else "") + (f"@{self.node}" if self.node else "")


@dataclasses.dataclass(frozen=True)
class Batch:
    """``BATCH:<device>(B)``; ``batch`` None means the device's optimal batch size."""

    device: Hardware
    batch: int | None = None

    def __str__(self) -> str:
        return f"BATCH:{self.device}" + (f"({self.batch})" if self.batch else "")


@dataclasses.dataclass(frozen=True)
class Item:
    """One entry of a device list, with its request count and exclusion mark."""

    device: Device
    requests: int | None = None
    excluded: bool = False

    def __str__(self) -> str:
        return ("-" if self.excluded else "") + str(self.device) + (
            f"({self.requests})" if self.requests else "")


@dataclasses.dataclass(frozen=True)
class Virtual:
    """``AUTO``/``MULTI``/``HETERO`` over a list (``AUTO`` may have none)."""

    kind: str
    items: tuple[Item, ...] = ()

    def __str__(self) -> str:
        return self.kind + (":" + ",".join(str(i) for i in self.items) if self.items else "")

    @property
    def priorities(self) -> str:
        """The list as ``MULTI_DEVICE_PRIORITIES`` spells it."""
        return ",".join(str(i) for i in self.items)


Device = Union[Hardware, Batch, Virtual]


class _Parser:
    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def fail(self, what: str, at: int | None = None) -> InvalidDeviceStringError:
        at = self.pos if at is None else at
        pointer = " " * (at + 1) + "^"
        return InvalidDeviceStringError(f"invalid device string '{self.text}': {what}\n {self.text!r}\n{pointer}")

    def peek(self, s: str) -> bool:
        return self.text.startswith(s, self.pos)

    def hardware(self) -> Hardware:
        m = _HW.match(self.text, self.pos)
        if not m or m.end() == self.pos:
            found = self.text[self.pos:self.pos + 1] or "the end"
            raise self.fail(f"expected a device name (e.g. CPU, GPU.1) but found '{found}'")
        name, dev_id, node = m.group(1), m.group(2) or "", m.group(3) or ""
        if name in VIRTUAL_KINDS:
            raise self.fail(f"the meta device {name} is not allowed here; only hardware devices are")
        self.pos = m.end()
        return Hardware(name, dev_id, node)

    def count(self, what: str) -> int | None:
        if not self.peek("("):
            return None
        m = _COUNT.match(self.text, self.pos)
        if not m:
            raise self.fail(f"unclosed '(' in {what}")
        body = m.group(1)
        if not body.isdigit():
            raise self.fail(f"{what} must be a positive integer, got '{body}'", self.pos + 1)
        if int(body) <= 0:
            raise self.fail(f"{what} must be > 0, while {body} is passed", self.pos + 1)
        self.pos = m.end()
        return int(body)

    def auto_list(self, kind: str) -> tuple[Item, ...]:
        items = []
        while True:
            start = self.pos
            excluded = self.peek("-")
            if excluded:
                if kind != "AUTO":
                    raise self.fail(f"'-' (exclude) is only allowed in an AUTO list, not {kind}")
                self.pos += 1
            if any(self.peek(k + ":") or self.text[self.pos:] == k for k in VIRTUAL_KINDS):
                raise self.fail(f"The meta device should not be in the device candidate list: "
                                f"{self.text[start:]}", start)
            hw = self.hardware()
            requests = self.count(f"the request count of {hw}")
            if excluded and requests:
                raise self.fail("an excluded device cannot have a request count", start)
            items.append(Item(hw, requests, excluded))
            if not self.peek(","):
                break
            self.pos += 1
        return tuple(items)

    def hetero_list(self) -> tuple[Item, ...]:
        items = []
        while True:
            if self.peek("AUTO:") or self.text[self.pos:] == "AUTO":
                self.pos += 4
                sub = self.auto_list("AUTO") if self.peek(":") and self._skip(1) else ()
                items.append(Item(Virtual("AUTO", sub)))
                break  # AUTO takes the rest of the list
            if self.peek("BATCH:"):
                self.pos += 6
                items.append(Item(self.batch_device()))
            elif self.peek("MULTI") or self.peek("HETERO"):
                raise self.fail("HETERO may hold hardware devices, AUTO or BATCH, not MULTI or HETERO")
            else:
                items.append(Item(self.hardware()))
            if not self.peek(","):
                break
            self.pos += 1
        return tuple(items)

    def _skip(self, n: int) -> bool:
        self.pos += n
        return True

    def batch_device(self) -> Batch:
        hw = self.hardware()
        return Batch(hw, self.count(f"Batch value for '{hw}'"))

    def device(self) -> Device:
        for kind in ("AUTO", "MULTI", "HETERO", "BATCH"):
            if self.text == kind:
                if kind == "AUTO":
                    self.pos = len(self.text)
                    return Virtual("AUTO")
                raise self.fail(f"{kind} needs a device list, e.g. {kind}:" + (
                    "GPU(8)" if kind == "BATCH" else "GPU,CPU") +
                    " (or the MULTI_DEVICE_PRIORITIES property)", len(kind))
            if self.peek(kind + ":"):
                self.pos += len(kind) + 1
                if self.pos == len(self.text):
                    raise self.fail(f"the device list after '{kind}:' is empty")
                if kind == "BATCH":
                    return self.batch_device()
                if kind == "HETERO":
                    return Virtual(kind, self.hetero_list())
                return Virtual(kind, self.auto_list(kind))
        hw = self.hardware()
        if self.peek("("):
            raise self.fail("a request or batch count is only allowed inside a device list")
        return hw


def parse_device(text: str) -> Device:
    """Parse a device string; raises :class:`InvalidDeviceStringError` pointing at the fault."""
    if not isinstance(text, str):
        raise InvalidDeviceStringError(f"a device string must be a str, got {type(text).__name__}")
    if not text:
        raise InvalidDeviceStringError("the device string is empty: name a device such as CPU or AUTO")
    parser = _Parser(text)
    if any(c.isspace() for c in text):
        raise parser.fail("spaces are not allowed in a device string", next(
            i for i, c in enumerate(text) if c.isspace()))
    result = parser.device()
    if parser.pos != len(text):
        raise parser.fail(f"unexpected '{text[parser.pos:]}' after the device")
    if isinstance(result, Virtual) and result.kind in ("AUTO", "MULTI"):
        if result.items and all(i.excluded for i in result.items) and result.kind == "MULTI":
            raise parser.fail("every device of the list is excluded", 0)
    return result


def format_device(device: Device) -> str:
    """The canonical string of a parsed device (``parse_device(format_device(d)) == d``)."""
    return str(device)
