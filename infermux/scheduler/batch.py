"""BATCH, the automatic-batching virtual device: ``BATCH:GPU(8)`` gathers single requests into batches.

``compile_model(model, "BATCH:DEV(N)")`` compiles two children through the dispatcher: a copy of
the model reshaped to batch ``N`` and the model as it is.  Each inference joins the current batch;
when ``N`` are pending they run as one batched inference and each request gets its own slice back
(a copy, so a later batch cannot overwrite it).  Without ``(N)`` the device's
``OPTIMAL_BATCH_SIZE`` is used when it is above 2 (as OpenVINO); otherwise there is no batching.

Batchability: every input and output is a static tensor whose dim 0 is 1; the reshaped copy must
infer shapes, compile and really produce dim 0 == N.  Anything else (a dynamic model, a batch-2
model, a ``Reshape`` to a fixed ``[1, -1]``) runs unbatched, said in a log line, never silently.

Differences from OpenVINO, on purpose (``reference/openvino_semantics.md`` section 18):

- **Requests are not bound to batch slots at creation.**  OpenVINO binds user request #k to
  worker k // B, so one stray request shifts every later group and each group waits out the full
  timeout.  Here any request, from any request object, joins whatever batch is being gathered.
- **A partial batch is run the faster way, measured.**  When ``AUTO_BATCH_TIMEOUT`` expires with
  k < N requests pending, OpenVINO always runs them one by one on the unbatched model.  Here the
  compile step times one batched and one single inference on the device and pads the partial
  batch up to N whenever ``k * single >= batched`` (``pad_from`` below); on the CPU that is k >= 2
  for the zoo's tiny model and k >= 3..5 for its MLP (benchmarks/bench_batch.py prints the table).
- **``AUTO_BATCH_TIMEOUT=0`` runs at once**: whatever is pending when a request arrives runs
  immediately (usually that request alone, on the unbatched model).
- A request with a bad input fails at the boundary, alone, before it joins a batch; a batched
  inference that throws fails exactly the requests of that batch, each with the error.

Execution happens in the requests' own threads: the request that completes a batch runs it, and
the gathering thread (explicit ``start()``/``close()``) only decides what to do with the requests
pending when the timeout expires (:mod:`infermux.scheduler.batch_model` holds the compiled model
and its gathering).  Stateful models are refused (one batch would mix the states of its requests).

>>> core.compile_model(model, "BATCH:GPU(8)", {"AUTO_BATCH_TIMEOUT": 50})   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from infermux.devices.properties import RO, RW, as_bool
from infermux.errors import InvalidDeviceStringError, PropertyError, ShapeMismatchError
from infermux.graph.model import Model, ValueInfo
from infermux.graph.shape import PartialShape
from infermux.graph.stateful import is_stateful
from infermux.scheduler.batch_model import (
    BatchCompiledModel, BatchNotSupportedError, PadRule, _key, _validate_timeout)
from infermux.scheduler.device_string import Batch, Hardware, parse_device

__all__ = ["BatchPlugin", "BatchCompiledModel", "BatchNotSupportedError", "PadRule",
           "batch_refusal", "with_batch", "maybe_auto_batch", "DEFAULT_TIMEOUT_MS"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_MS = 1000
_MIN_AUTO_BATCH = 3          # an automatic batch size is used only above 2 ("batch < 4 inefficient")
_CALIBRATION_BUDGET_S = 0.2  # compile-time timing of the two children: at most this, or one run each
_OWN_KEYS = ("AUTO_BATCH_TIMEOUT", "PERF_COUNT")
_CORE_KEYS = ("ALLOW_AUTO_BATCHING",)  # accepted and dropped: the children are never re-batched


# -- batchability ---------------------------------------------------------------------------------

def batch_refusal(model: Model) -> str | None:
    """Why ``model`` cannot be batched along dim 0, or None if it can.

    Every input and output must be a tensor of static shape whose dim 0 is 1 (OpenVINO's strict
    rule).  The batch dimension is dim 0: the IR has no layouts yet (when it has, an input whose
    layout puts ``N`` elsewhere is refused here).
    """
    if model.is_dynamic():
        return "Auto-batching does not support dynamic networks! (a dimension is dynamic)"
    for kind, infos in (("input", model.graph.inputs), ("output", model.graph.outputs)):
        if not infos:
            return f"the model has no {kind}s"
        for info in infos:
            if info.kind != "tensor":
                return f"{kind} '{info.name}' is a {info.kind}, not a tensor"
            if len(info.shape) == 0:
                return f"{kind} '{info.name}' is a scalar: it has no batch dimension"
            if int(info.shape[0].get_length()) != 1:
                return (f"{kind} '{info.name}' has shape {info.shape}: dim 0 must be 1 to batch along "
                        f"it (reshape the model to batch 1 first)")
    return None


def with_batch(model: Model, batch: int) -> Model:
    """A copy of ``model`` with dim 0 of every input set to ``batch``, shapes inferred again.

    Works on the IR directly: output and intermediate shapes are cleared and re-derived by
    ``infer_model_shapes`` in strict mode (an inconsistency raises ``ShapeMismatchError``).
    """
    from infermux.graph.shape_infer import infer_model_shapes

    twin = model.clone()
    graph = twin.graph
    for info in graph.inputs:
        info.shape = PartialShape([batch, *list(info.shape)[1:]])
    for info in graph.outputs:
        info.shape = None
    graph.value_info.clear()
    infer_model_shapes(twin, strict=True)
    return twin


def _dim0_mismatch(infos: Sequence[ValueInfo], batch: int) -> str | None:
    for info in infos:
        if info.shape is None or len(info.shape) == 0 or info.shape[0] != batch:
            return f"output '{info.name}' has shape {info.shape} after reshaping, not dim 0 == {batch}"
    return None


# -- calibrating the partial-batch rule -----------------------------------------------------------

def _zeros(infos: Sequence[ValueInfo]) -> list[np.ndarray]:
    return [np.zeros(tuple(int(d.get_length()) for d in i.shape), i.element_type.to_dtype()) for i in infos]


def _timed_runs(fn: Callable[[], Any], budget_s: float, runs: int = 4) -> tuple[float, Any]:
    """(fastest of up to ``runs`` calls of ``fn``, stopping once ``budget_s`` is spent; the first result)."""
    best, spent, first = math.inf, 0.0, None
    for i in range(runs):
        t0 = time.perf_counter()
        result = fn()
        took = time.perf_counter() - t0
        best, spent, first = min(best, took), spent + took, result if i == 0 else first
        if spent > budget_s:
            break
    return best, first


def _verify_and_calibrate(batched: Any, unbatched: Any, batch: int) -> PadRule:
    """Time both children on zeros; the batched one must really return dim 0 == N."""
    feeds, single_feeds = _zeros(batched.input_infos), _zeros(unbatched.input_infos)
    batch_s, (outputs, _) = _timed_runs(lambda: batched.infer(feeds), _CALIBRATION_BUDGET_S / 2)
    for info, value in zip(batched.output_infos, outputs):
        shape = getattr(value, "shape", ())
        if not shape or shape[0] != batch:
            raise ShapeMismatchError(f"the batched model returned output '{info.name}' with shape "
                                     f"{tuple(shape)}, not dim 0 == {batch}")
    single_s, _ = _timed_runs(lambda: unbatched.infer(single_feeds), _CALIBRATION_BUDGET_S / 2)
    return PadRule.from_times(batch_s, single_s, batch)


# -- the plugin -----------------------------------------------------------------------------------

_guard = threading.local()


@contextlib.contextmanager
def _compiling_children():
    """Marks this thread as compiling BATCH's children: ``maybe_auto_batch`` then never re-batches."""
    _guard.depth = getattr(_guard, "depth", 0) + 1
    try:
        yield
    finally:
        _guard.depth -= 1


class BatchPlugin:
    """The ``BATCH`` virtual device (``BATCH:GPU(8)``, or ``BATCH`` + ``MULTI_DEVICE_PRIORITIES``)."""

    name = "BATCH"
    virtual = True

    def __init__(self) -> None:
        self._dispatcher: Any = None
        self._defaults: dict[str, Any] = {"AUTO_BATCH_TIMEOUT": DEFAULT_TIMEOUT_MS, "PERF_COUNT": False}

    def bind(self, dispatcher: Any) -> None:
        """Called once by the dispatcher: children are compiled through it."""
        self._dispatcher = dispatcher

    def devices(self) -> list[str]:
        """Virtual devices are never listed."""
        return []

    _SUPPORTED: ClassVar[dict[str, str]] = {
        "SUPPORTED_PROPERTIES": RO, "FULL_DEVICE_NAME": RO, "MULTI_DEVICE_PRIORITIES": RW,
        "AUTO_BATCH_TIMEOUT": RW, "PERF_COUNT": RW}

    def get_property(self, key: str, device_id: str = "") -> Any:
        """The plugin's five keys (as OpenVINO's BATCH)."""
        key = _key(key)
        if key == "SUPPORTED_PROPERTIES":
            return dict(self._SUPPORTED)
        if key == "FULL_DEVICE_NAME":
            return "BATCH"
        if key == "MULTI_DEVICE_PRIORITIES":
            if "MULTI_DEVICE_PRIORITIES" not in self._defaults:
                raise PropertyError("The Value is not set for MULTI_DEVICE_PRIORITIES")
            return self._defaults[key]
        if key in self._defaults:
            return self._defaults[key]
        raise PropertyError(f"Unsupported config key: {key}")

    def set_property(self, properties: Mapping[str, Any], device_id: str = "") -> None:
        """Defaults for later compiles: ``AUTO_BATCH_TIMEOUT``, ``MULTI_DEVICE_PRIORITIES``, ``PERF_COUNT``."""
        for key, value in properties.items():
            key = _key(key)
            if key == "AUTO_BATCH_TIMEOUT":
                self._defaults[key] = _validate_timeout(value)
            elif key == "MULTI_DEVICE_PRIORITIES":
                parse_device(f"BATCH:{value}")
                self._defaults[key] = str(value)
            elif key == "PERF_COUNT":
                self._defaults[key] = bool(as_bool(value))
            else:
                raise PropertyError(f"Unsupported config key: {key}")

    def query_model(self, model: Model, config: Mapping[str, Any] | None = None,
                    device_id: str = "") -> dict[str, str]:
        """The child device's answer (BATCH runs what its device runs)."""
        device, _ = self._parse(device_id, config)
        child_cfg, _ = self._split_config(device, config)
        return self._dispatcher.query(model, str(device), child_cfg)

    def compile_model(self, model: Model, config: Mapping[str, Any] | None = None,
                      device_id: str = "") -> BatchCompiledModel:
        """Compile the unbatched model and, when batchable, a copy reshaped to the batch size."""
        device, explicit = self._parse(device_id, config)
        child_cfg, own = self._split_config(device, config)
        if is_stateful(model):
            raise BatchNotSupportedError(
                f"BATCH does not support stateful models: '{model.friendly_name}' has variables, and "
                f"one batch would mix the states of its requests. Compile it on '{device}' directly.")
        with _compiling_children():
            unbatched = self._dispatcher.compile(model, str(device), child_cfg)
            batch = explicit or self._automatic_batch(device, child_cfg)
            batched, rule = self._batched_child(model, device, batch, child_cfg, unbatched, bool(explicit))
        compiled = BatchCompiledModel(unbatched, batched, batch if batched else 1,
                                      own["AUTO_BATCH_TIMEOUT"], rule, device_label=str(device),
                                      num_requests=self._num_requests(device, child_cfg))
        compiled.start()
        return compiled

    # -- helpers ------------------------------------------------------------------------------
    def _parse(self, device_id: str, config: Mapping[str, Any] | None) -> tuple[Hardware, int | None]:
        """The child device and explicit batch size from the list, the config or the defaults."""
        device_id = (device_id or (config or {}).get("MULTI_DEVICE_PRIORITIES")
                     or self._defaults.get("MULTI_DEVICE_PRIORITIES", ""))
        if not device_id:
            raise InvalidDeviceStringError(
                "ov::device::priorities key for AUTO BATCH is not set for BATCH device: name the "
                "device and batch size, e.g. 'BATCH:GPU(8)'")
        tree = parse_device(f"BATCH:{device_id}")
        assert isinstance(tree, Batch)
        return tree.device, tree.batch

    def _split_config(self, device: Hardware, config: Mapping[str, Any] | None):
        """(config for the children, BATCH's own settings); a key neither takes is rejected."""
        own = {k: self._defaults[k] for k in _OWN_KEYS}
        child_keys = self._child_keys(device)
        child: dict[str, Any] = {}
        for key, value in (config or {}).items():
            key = _key(key)
            if key in child_keys:
                child[key] = value
            if key == "AUTO_BATCH_TIMEOUT":
                own[key] = _validate_timeout(value)
            elif key == "PERF_COUNT":
                own[key] = bool(as_bool(value))
            elif key not in child_keys and key not in _CORE_KEYS and key != "MULTI_DEVICE_PRIORITIES":
                raise PropertyError(f"Unsupported config key: {key}")
        if own["PERF_COUNT"] and "PERF_COUNT" in child_keys:
            child["PERF_COUNT"] = True
        return child, own

    def _child_keys(self, device: Hardware) -> set[str]:
        try:
            supported = self._dispatcher.get_property(str(device), "SUPPORTED_PROPERTIES")
        except Exception:  # noqa: BLE001 - a device without the key forwards nothing
            return set()
        return {k for k, m in dict(supported).items() if m == RW}

    def _num_requests(self, device: Hardware, child_cfg: Mapping[str, Any]) -> int:
        """``PERFORMANCE_HINT_NUM_REQUESTS`` from the config, else the device's default (0: none)."""
        if "PERFORMANCE_HINT_NUM_REQUESTS" in child_cfg:
            return int(child_cfg["PERFORMANCE_HINT_NUM_REQUESTS"] or 0)
        try:
            return int(self._dispatcher.get_property(str(device), "PERFORMANCE_HINT_NUM_REQUESTS") or 0)
        except Exception:  # noqa: BLE001 - a device without the key
            return 0

    def _automatic_batch(self, device: Hardware, child_cfg: Mapping[str, Any]) -> int:
        try:
            optimal = int(self._dispatcher.get_property(str(device), "OPTIMAL_BATCH_SIZE"))
        except Exception:  # noqa: BLE001 - the device does not report one (CPU)
            log.info("BATCH:%s: the device reports no OPTIMAL_BATCH_SIZE, so there is no batching; "
                     "give a batch size, e.g. BATCH:%s(8)", device, device)
            return 1
        cap = self._num_requests(device, child_cfg)
        batch = min(optimal, cap) if cap else optimal
        if batch < _MIN_AUTO_BATCH:
            log.info("BATCH:%s: OPTIMAL_BATCH_SIZE %d (capped to %d) is below %d, so there is no "
                     "batching", device, optimal, batch, _MIN_AUTO_BATCH)
            return 1
        return batch

    def _batched_child(self, model: Model, device: Hardware, batch: int, child_cfg: Mapping[str, Any],
                       unbatched: Any, explicit: bool):
        """(the batched child, its PadRule), or (None, None) with a log line saying why not."""
        if batch <= 1:
            if explicit:
                log.info("BATCH:%s(1): batch size 1 means no batching", device)
            return None, None
        reason = batch_refusal(model)
        batched = None
        try:
            if reason is None:
                reshaped = with_batch(model, batch)
                reason = _dim0_mismatch(reshaped.graph.outputs, batch)
            if reason is None:
                batched = self._dispatcher.compile(reshaped, str(device), child_cfg)
                return batched, _verify_and_calibrate(batched, unbatched, batch)
        except Exception as exc:  # noqa: BLE001 - any failure of the batched copy means no batching
            reason = f"the copy reshaped to batch {batch} failed: {exc}"
            if batched is not None:
                batched.release()
        log.warning("BATCH:%s(%d): model '%s' is not batchable, running it without batching: %s",
                    device, batch, model.friendly_name, reason)
        return None, None


# -- implicit batching ----------------------------------------------------------------------------

def maybe_auto_batch(dispatcher: Any, model: Model, device: str, config: Mapping[str, Any] | None) -> str:
    """The device string to compile on: ``BATCH:<device>(n)`` when implicit batching applies.

    As OpenVINO's ``apply_auto_batching``: a hardware device (never CPU) that reports
    ``OPTIMAL_BATCH_SIZE``; ``PERFORMANCE_HINT`` THROUGHPUT (from the config, else the device's
    default); ``ALLOW_AUTO_BATCHING`` not False (config, else ``dispatcher.allow_auto_batching``
    if the Core keeps such a default); no ``EXCLUSIVE_ASYNC_REQUESTS``; a model batchable along
    dim 0; and a batch size (capped by ``PERFORMANCE_HINT_NUM_REQUESTS``) above 2.  Never inside
    BATCH's own compile of its children.  Otherwise ``device`` is returned unchanged.

    >>> maybe_auto_batch(d, model, "FGPU", {"PERFORMANCE_HINT": "THROUGHPUT"})   # doctest: +SKIP
    'BATCH:FGPU(8)'
    """
    cfg = {_key(k): v for k, v in (config or {}).items()}
    if getattr(_guard, "depth", 0):
        return device
    tree = parse_device(device) if isinstance(device, str) else device
    if not isinstance(tree, Hardware) or tree.name == "CPU" or tree.node:
        return device
    allow = cfg.get("ALLOW_AUTO_BATCHING", getattr(dispatcher, "allow_auto_batching", True))
    if as_bool(allow) is False or as_bool(cfg.get("EXCLUSIVE_ASYNC_REQUESTS", False)):
        return device
    if str(_key(cfg.get("PERFORMANCE_HINT") or _device_property(dispatcher, device, "PERFORMANCE_HINT"))) \
            != "THROUGHPUT":
        return device
    optimal = _device_property(dispatcher, device, "OPTIMAL_BATCH_SIZE")
    if optimal is None:
        return device
    cap = int(cfg.get("PERFORMANCE_HINT_NUM_REQUESTS") or 0)
    batch = min(int(optimal), cap) if cap else int(optimal)
    reason = batch_refusal(model) or ("the model is stateful" if is_stateful(model) else None)
    if batch < _MIN_AUTO_BATCH or reason:
        log.info("%s: no implicit batching: %s", device, reason or f"batch size {batch} is below 3")
        return device
    return f"BATCH:{device}({batch})"


def _device_property(dispatcher: Any, device: str, key: str) -> Any:
    try:
        return dispatcher.get_property(str(device), key)
    except Exception:  # noqa: BLE001 - a device without the key
        return None
