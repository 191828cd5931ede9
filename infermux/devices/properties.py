"""Properties: typed keys spelled as OpenVINO spells them, their enums, and validation.

Enums are ``str`` enums, so ``{"PERFORMANCE_HINT": "THROUGHPUT"}`` and
``{"PERFORMANCE_HINT": PerformanceMode.THROUGHPUT}`` are the same config.  A plugin declares a
table of :class:`PropertySpec`; :func:`validate_config` checks a user config against it with the
messages OpenVINO users know.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from typing import Any

from infermux.errors import PropertyError

__all__ = ["PerformanceMode", "ExecutionMode", "Priority", "SchedulePolicy", "RO", "RW",
           "PropertySpec", "validate_config", "enum_validator", "int_validator", "bool_validator",
           "as_bool"]

RO, RW = "RO", "RW"


class _StrEnum(str, enum.Enum):
    def __str__(self) -> str:
        return self.value


class PerformanceMode(_StrEnum):
    """``PERFORMANCE_HINT`` values."""

    LATENCY = "LATENCY"
    THROUGHPUT = "THROUGHPUT"
    CUMULATIVE_THROUGHPUT = "CUMULATIVE_THROUGHPUT"


class ExecutionMode(_StrEnum):
    """``EXECUTION_MODE_HINT`` values."""

    PERFORMANCE = "PERFORMANCE"
    ACCURACY = "ACCURACY"


class Priority(_StrEnum):
    """``MODEL_PRIORITY`` values."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    DEFAULT = "MEDIUM"


class SchedulePolicy(_StrEnum):
    """``SCHEDULE_POLICY`` values (MULTI / AUTO cumulative throughput)."""

    ROUND_ROBIN = "ROUND_ROBIN"
    DEVICE_PRIORITY = "DEVICE_PRIORITY"
    DEFAULT = "DEVICE_PRIORITY"


@dataclasses.dataclass(frozen=True)
class PropertySpec:
    """One property: key, RO/RW, default, and a validator normalising a user value."""

    key: str
    mutability: str = RW
    default: Any = None
    validate: Callable[[Any], Any] | None = None


def enum_validator(cls: type[enum.Enum], key: str) -> Callable[[Any], Any]:
    """A validator accepting an enum member or its name."""
    allowed = "/".join(m.value for m in cls)

    def check(value):
        try:
            return cls(value.value if isinstance(value, enum.Enum) else str(value))
        except ValueError:
            raise PropertyError(
                f"Wrong value {value} for property key {key}. Expected only {allowed}.") from None

    return check


def int_validator(key: str, minimum: int = 0, extra: tuple[str, ...] = ()) -> Callable[[Any], Any]:
    """A validator for a non-negative int (or one of ``extra`` strings)."""
    def check(value):
        if isinstance(value, str) and value.upper() in extra:
            return value.upper()
        if isinstance(value, enum.Enum) and str(value.value).upper() in extra:
            return str(value.value).upper()
        try:
            number = int(value)
            if isinstance(value, float) and value != number:
                raise ValueError
        except (TypeError, ValueError):
            number = None
        if number is None or isinstance(value, bool) or number < minimum:
            more = f" or {'/'.join(extra)}" if extra else ""
            raise PropertyError(f"Wrong value {value} for property key {key}. Expected an integer "
                                f">= {minimum}{more}.")
        return number

    return check


def as_bool(value: Any) -> bool | None:
    """True/False from a bool or OpenVINO's ``'YES'``/``'NO'`` strings; None if neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.upper() in ("YES", "TRUE", "1", "NO", "FALSE", "0"):
        return value.upper() in ("YES", "TRUE", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return None


def bool_validator(key: str) -> Callable[[Any], Any]:
    """A validator for booleans (``True``/``False``/``'YES'``/``'NO'``)."""
    def check(value):
        result = as_bool(value)
        if result is None:
            raise PropertyError(f"Wrong value {value} for property key {key}. Expected True/False.")
        return result

    return check


def validate_config(specs: Mapping[str, PropertySpec], config: Mapping[str, Any] | None,
                    device: str) -> dict[str, Any]:
    """Check ``config`` against ``specs``: unknown or read-only keys and bad values raise."""
    result: dict[str, Any] = {}
    for key, value in (config or {}).items():
        key = str(key.value) if isinstance(key, enum.Enum) else str(key)
        spec = specs.get(key)
        if spec is None:
            raise PropertyError(
                f"Unsupported property {key} by {device} plugin. Supported: "
                f"{', '.join(k for k, s in specs.items() if s.mutability == RW)}.")
        if spec.mutability != RW:
            raise PropertyError(f"Property {key} of {device} is read-only and cannot be set.")
        result[key] = spec.validate(value) if spec.validate else value
    return result
