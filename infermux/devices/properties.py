"""Properties: typed keys spelled as OpenVINO spells them, their enums, and validation.

Enums are ``str`` enums, so ``{"PERFORMANCE_HINT": "THROUGHPUT"}`` and
``{"PERFORMANCE_HINT": PerformanceMode.THROUGHPUT}`` are the same config.  A plugin declares a
table of :class:`PropertySpec`; :func:`validate_config` checks a user config against it with the
messages OpenVINO users know, and a :class:`PropertyTable` keeps the values set with
``set_property`` (for all of a plugin's devices or for one id) and resolves a compile config.

Scopes, from weakest to strongest: the spec's default, ``core.set_property({...})`` (every plugin
that supports the key), ``core.set_property("GPU", {...})`` (every GPU),
``core.set_property("GPU.1", {...})``, the compile config, and the compile config's
``DEVICE_PROPERTIES`` entry for the device (``{"DEVICE_PROPERTIES": {"GPU": {...}}}``).
Core keys (:data:`CORE_PROPERTIES`: ``CACHE_DIR`` ...) belong to the Core; a plugin handed one
(say through a virtual device's child config) ignores it instead of failing.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from infermux.errors import PropertyError

__all__ = [
    "CORE_KEYS",
    "CORE_PROPERTIES",
    "RO",
    "RW",
    "ExecutionMode",
    "PerformanceMode",
    "Priority",
    "PropertySpec",
    "PropertyTable",
    "SchedulePolicy",
    "as_bool",
    "bool_validator",
    "enum_validator",
    "flatten_device_properties",
    "int_validator",
    "key_name",
    "path_validator",
    "precision_validator",
    "validate_config",
]

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
    """One property: key, RO/RW, default, a validator normalising a user value, and for metrics
    read live (available memory) ``compute(device_id)``."""

    key: str
    mutability: str = RW
    default: Any = None
    validate: Callable[[Any], Any] | None = None
    compute: Callable[[str], Any] | None = None


def key_name(key: Any) -> str:
    """A property key as its string: ``"CACHE_DIR"``, an enum member, or a key helper function
    (``props.cache_dir`` as well as ``props.cache_dir()``)."""
    if isinstance(key, enum.Enum):
        return str(key.value)
    if callable(key) and not isinstance(key, str):
        return str(key())
    return str(key)


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


_PRECISIONS = {"f32": "f32", "float32": "f32", "fp32": "f32", "f16": "f16", "float16": "f16",
               "fp16": "f16", "half": "f16", "bf16": "bf16", "bfloat16": "bf16"}


def precision_validator(key: str, allowed: tuple[str, ...], device: str) -> Callable[[Any], Any]:
    """A validator for ``INFERENCE_PRECISION_HINT``-like keys: ``"f16"``, ``Type.f16``,
    ``numpy.float16`` and ``"float16"`` all normalise to ``"f16"``; ``allowed`` are the short names
    the device computes in."""
    def check(value):
        name = getattr(value, "name", None)
        if name is None:
            try:
                name = np.dtype(value).name if not isinstance(value, str) else value
            except TypeError:
                name = str(value)
        short = _PRECISIONS.get(str(name).lower())
        if short not in allowed:
            raise PropertyError(
                f"Wrong value {value} for property key {key}. The {device} plugin computes in "
                f"{'/'.join(allowed)} only; expected {'/'.join(allowed)}.")
        return short

    return check


def path_validator(key: str) -> Callable[[Any], Any]:
    """A validator for a folder path (str or ``os.PathLike``; ``""`` switches the feature off)."""
    def check(value):
        if isinstance(value, (str, os.PathLike)):
            return os.fspath(value)
        raise PropertyError(f"Wrong value {value!r} for property key {key}. Expected a folder path "
                            f"(str or os.PathLike), or '' to switch it off.")

    return check


# The keys the Core itself owns (OpenVINO's core properties): never forwarded to a plugin.
CORE_PROPERTIES: dict[str, PropertySpec] = {s.key: s for s in [
    PropertySpec("CACHE_DIR", RW, "", path_validator("CACHE_DIR")),
    PropertySpec("ENABLE_MMAP", RW, True, bool_validator("ENABLE_MMAP")),
    PropertySpec("FORCE_TBB_TERMINATE", RW, False, bool_validator("FORCE_TBB_TERMINATE")),
]}
CORE_KEYS = frozenset(CORE_PROPERTIES)


def flatten_device_properties(config: Mapping[str, Any] | None, device: str,
                              device_id: str = "") -> dict[str, Any]:
    """``config`` with its ``DEVICE_PROPERTIES`` entries for this device merged in (``"GPU"``
    then ``"GPU.1"``, the more specific winning) and the other devices' entries dropped."""
    result = {key_name(k): v for k, v in (config or {}).items()}
    nested = result.pop("DEVICE_PROPERTIES", None)
    if nested is None:
        return result
    if not isinstance(nested, Mapping) or not all(isinstance(v, Mapping) for v in nested.values()):
        raise PropertyError(
            f"Wrong value {nested!r} for property key DEVICE_PROPERTIES. Expected a dict of "
            f"device name -> dict of properties, e.g. {{'CPU': {{'PERF_COUNT': True}}}}")
    for name in (device, f"{device}.{device_id}" if device_id else None):
        if name and name in nested:
            result.update({key_name(k): v for k, v in nested[name].items()})
    return result


def validate_config(specs: Mapping[str, PropertySpec], config: Mapping[str, Any] | None,
                    device: str) -> dict[str, Any]:
    """Check ``config`` against ``specs``: unknown or read-only keys and bad values raise.

    Core keys (``CACHE_DIR``, ...) are skipped: the Core consumed them already."""
    result: dict[str, Any] = {}
    for key, value in (config or {}).items():
        key = key_name(key)
        if key in CORE_KEYS and key not in specs:
            continue
        spec = specs.get(key)
        if spec is None:
            raise PropertyError(
                f"Unsupported property {key} by {device} plugin. Supported: "
                f"{', '.join(k for k, s in specs.items() if s.mutability == RW)}.")
        if spec.mutability != RW:
            raise PropertyError(f"Property {key} of {device} is read-only and cannot be set.")
        result[key] = spec.validate(value) if spec.validate else value
    return result


class PropertyTable:
    """One plugin's properties: its specs and the values set with ``set_property``.

    Values set for device id ``""`` apply to every device of the plugin; values set for an id
    (``core.set_property("GPU.1", ...)``) apply to that device only and win.

    >>> table = PropertyTable("CPU", [PropertySpec("PERF_COUNT", RW, False, bool_validator("PERF_COUNT"))])
    >>> table.set({"PERF_COUNT": "YES"})
    >>> table.get("PERF_COUNT"), table.supported()["PERF_COUNT"]
    (True, 'RW')
    """

    def __init__(self, device: str, specs: Iterable[PropertySpec]):
        self.device = device
        self.specs: dict[str, PropertySpec] = {s.key: s for s in specs}
        self.specs.setdefault("SUPPORTED_PROPERTIES", PropertySpec("SUPPORTED_PROPERTIES", RO))
        self._values: dict[str, dict[str, Any]] = {}

    def supported(self) -> dict[str, str]:
        """``{key: 'RO' | 'RW'}`` (the ``SUPPORTED_PROPERTIES`` value)."""
        return {k: s.mutability for k, s in self.specs.items()}

    def rw_keys(self) -> set[str]:
        """The keys a compile config may set."""
        return {k for k, s in self.specs.items() if s.mutability == RW}

    def get(self, key: Any, device_id: str = "") -> Any:
        """The current value of ``key`` for ``device_id`` (a metric, a set value, or the default)."""
        key = key_name(key)
        if key == "SUPPORTED_PROPERTIES":
            return self.supported()
        spec = self.specs.get(key)
        if spec is None:
            raise PropertyError(f"Cannot get unsupported property {key} of the {self.device} device. "
                                f"Supported: {', '.join(sorted(self.specs))}.")
        if spec.compute is not None:
            return spec.compute(device_id)
        for scope in (device_id, ""):
            values = self._values.get(scope, {})
            if key in values:
                return values[key]
        return spec.default

    def set(self, properties: Mapping[str, Any] | None, device_id: str = "") -> None:
        """Validate and keep ``properties`` as defaults for later compiles."""
        config = flatten_device_properties(properties, self.device, device_id)
        self._values.setdefault(device_id, {}).update(validate_config(self.specs, config, self.device))

    def resolve(self, config: Mapping[str, Any] | None, device_id: str = "") -> tuple[dict[str, Any], set[str]]:
        """``(every RW key's value for this compile, the keys set explicitly at some scope)``."""
        cfg = {k: s.default for k, s in self.specs.items() if s.mutability == RW}
        explicit: set[str] = set()
        for scope in ("", device_id) if device_id else ("",):
            values = self._values.get(scope, {})
            cfg.update(values)
            explicit |= set(values)
        user = validate_config(self.specs, flatten_device_properties(config, self.device, device_id),
                               self.device)
        cfg.update(user)
        return cfg, explicit | set(user)
