"""BATCH's compiled model: it gathers single requests into batches and runs them on its children.

:class:`BatchCompiledModel` is what ``BatchPlugin.compile_model`` (:mod:`infermux.scheduler.batch`,
where the device's behaviour is described) returns.  A request joins the pending queue; the one
that fills a batch runs it in its own thread, and the gathering thread (``_gather``, explicit
``start()``/``close()``) flushes the pending requests when the oldest has waited
``AUTO_BATCH_TIMEOUT``: padded to a full batch or one by one, as the :class:`PadRule` says.
Every request of a failed batch gets the error; a closed model fails the requests still waiting.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import enum
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np

from infermux.devices.properties import RO, RW, int_validator
from infermux.errors import InfermuxError, PropertyError, ShapeMismatchError, TypeMismatchError

__all__ = ["BatchCompiledModel", "BatchNotSupportedError", "PadRule"]

log = logging.getLogger("infermux.scheduler.batch")  # BATCH logs under one name


class BatchNotSupportedError(InfermuxError, NotImplementedError):
    """What BATCH cannot do: stateful models, ``export_model``."""


def _key(key: Any) -> str:
    return str(key.value) if isinstance(key, enum.Enum) else str(key)


_validate_timeout = int_validator("AUTO_BATCH_TIMEOUT")


# -- the partial-batch rule -----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PadRule:
    """How a partial batch of ``k`` requests runs: padded to N if ``k >= pad_from``, else one by one.

    ``batch_s`` and ``single_s`` are the measured times of one batched and one single inference;
    padding costs ``batch_s``, running singly ``k * single_s`` of device time.
    """

    batch_s: float
    single_s: float
    pad_from: int

    @classmethod
    def from_times(cls, batch_s: float, single_s: float, batch: int) -> PadRule:
        """The rule for measured times (padding a batch of one never pays)."""
        ratio = batch_s / max(single_s, 1e-9)
        return cls(batch_s, single_s, min(batch, max(2, math.ceil(ratio - 1e-9))))


# -- the compiled model ---------------------------------------------------------------------------

class _Pending:
    """One request waiting in the gatherer: its inputs, then its role, then its result.

    ``wake`` is a lock taken at creation and released exactly once, by whoever gives the request
    a role or its result (the cheapest one-shot signal CPython has).
    """

    __slots__ = ("inputs", "profile", "arrived", "wake", "woken", "role", "done", "outputs", "timings",
                 "error", "on_done")

    def __init__(self, inputs: list[np.ndarray], profile: bool, on_done: Callable | None = None):
        self.inputs, self.profile = inputs, profile
        self.on_done = on_done  # set for infer_async requests: no thread waits for them
        self.arrived = time.monotonic()
        self.wake = threading.Lock()
        self.wake.acquire()
        self.woken = False
        self.role: Callable[[], None] | None = None   # work this request's thread must do
        self.done = False
        self.outputs: list[Any] | None = None
        self.timings: list | None = None
        self.error: BaseException | None = None

    def signal(self) -> None:
        """Wake the request's thread, or call its completion callback (once)."""
        if self.on_done is not None:
            if self.done and not self.woken:
                self.woken = True
                self.on_done(self.outputs, self.timings, self.error)
            return
        if not self.woken:
            self.woken = True
            self.wake.release()


def _error_copy(exc: BaseException) -> BaseException:
    """Each request of a failed batch raises its own exception object, of the same type."""
    try:
        twin = copy.copy(exc)
        twin.__cause__ = exc.__cause__
        return twin
    except Exception:  # noqa: BLE001 - an exception that cannot be copied is shared
        return exc


class BatchCompiledModel:
    """The worker BATCH returns: gathers ``infer`` calls into batches for its children."""

    _SUPPORTED: ClassVar[dict[str, str]] = {
        "SUPPORTED_PROPERTIES": RO, "OPTIMAL_NUMBER_OF_INFER_REQUESTS": RO, "NETWORK_NAME": RO,
        "EXECUTION_DEVICES": RO, "MULTI_DEVICE_PRIORITIES": RO, "AUTO_BATCH_TIMEOUT": RW}

    def __init__(self, unbatched: Any, batched: Any | None, batch_size: int, timeout_ms: int,
                 rule: PadRule | None, device_label: str, num_requests: int = 0):
        self._unbatched, self._batched = unbatched, batched
        self.batch_size = batch_size
        self.pad_rule = rule
        self.device_name = f"BATCH:{device_label}({batch_size})"
        self._device_label = device_label
        self.input_infos = list(unbatched.input_infos)
        self.output_infos = list(unbatched.output_infos)
        self.variables: dict[str, Any] = {}
        self._timeout_ms = int(timeout_ms)
        self._num_requests = num_requests  # PERFORMANCE_HINT_NUM_REQUESTS (0: no cap)
        self._pending: collections.deque[_Pending] = collections.deque()
        self._cond = threading.Condition()
        # How requests ran: {"full", "padded", "single"} batches and "timeouts" (flushes on expiry).
        self.counts: collections.Counter[str] = collections.Counter()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._expected = [(tuple(int(d.get_length()) for d in i.shape), i.element_type.to_dtype())
                          for i in self.input_infos] if batched is not None else []
        # Batches run in their leaders' threads; no more at once than the batched child's streams.
        streams = int(batched.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")) if batched is not None else 1
        self._batch_slots = threading.Semaphore(max(1, streams))

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the gathering thread (compile_model does); a no-op without batching."""
        if self._batched is None or self._thread is not None:
            return
        # The thread holds the model weakly: a model dropped without release() is collected, and
        # the finalizer wakes the thread so that it ends instead of lingering.
        self._thread = threading.Thread(target=_gather, args=(weakref.ref(self), self._cond),
                                        name=f"infermux-{self.device_name}", daemon=True)
        weakref.finalize(self, _notify, self._cond)
        self._thread.start()

    def close(self) -> None:
        """Stop gathering; every request still waiting for a batch fails with a clear error."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            stranded, self._pending = list(self._pending), collections.deque()
            self._cond.notify_all()
        for item in stranded:
            item.error = InfermuxError(
                f"{self.device_name} was closed while this request was waiting for a batch "
                f"({len(stranded)} request(s) were pending); it was not run")
            item.done = True
            item.signal()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def release(self) -> None:
        """Close the gatherer, stop the request threads and release both children."""
        self.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self._unbatched.release()
        if self._batched is not None:
            self._batched.release()

    # -- the worker interface ---------------------------------------------------------------------
    def submit(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on a request thread (requests use :meth:`infer_async` and need none)."""
        if self._batched is None:
            return self._unbatched.submit(fn)
        return self._request_executor().submit(fn)

    def _request_executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            with self._executor_lock:
                if self._executor is None:
                    optimal = int(self.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
                    self._executor = ThreadPoolExecutor(max(256, 4 * optimal),
                                                        thread_name_prefix="infermux-batch")
        return self._executor

    def infer(self, inputs: Sequence[Any], *, profile: bool = False,
              state: Any = None) -> tuple[list[Any], list | None]:
        """Join the current batch and block until this request's slice of the result is back."""
        if self._batched is None:
            return self._unbatched.infer(inputs, profile=profile)
        item = _Pending(self._checked(inputs), profile)
        self._join(item, me=item)
        return self._serve(item)

    def infer_async(self, inputs: Sequence[Any], state: Any, on_done: Callable[..., None]) -> None:
        """Join the current batch and return at once; ``on_done(outputs, timings, error)`` follows.

        No thread waits per request: the batch runs on one request thread when it is full (or
        when the timeout fires), and that thread completes every request of the batch."""
        if self._batched is None:
            self._unbatched_async(inputs, on_done)
            return
        self._join(_Pending(self._checked(inputs), False, on_done), me=None)

    def _join(self, item: _Pending, me: _Pending | None) -> None:
        """Queue ``item``; a full batch (or any, with timeout 0) gets its roles at once (``me``: the
        request whose own thread will serve it, so it is not woken)."""
        with self._cond:
            if self._closed:
                raise InfermuxError(f"{self.device_name} is closed (release_memory was called); "
                                    f"compile the model again to run it")
            self._pending.append(item)
            if len(self._pending) >= self.batch_size:
                self._assign([self._pending.popleft() for _ in range(self.batch_size)], me)
            elif self._timeout_ms == 0:
                self._assign(self._take_all(), me)
            elif len(self._pending) == 1:
                self._cond.notify()  # a new oldest request: the gatherer's deadline changed

    def _unbatched_async(self, inputs: Sequence[Any], on_done: Callable[..., None]) -> None:
        def run() -> None:
            try:
                outputs, timings = self._unbatched.infer(inputs)
            except Exception as exc:  # noqa: BLE001 - delivered to the request
                on_done(None, None, exc)
                return
            on_done(outputs, timings, None)

        self._unbatched.submit(run)

    def _checked(self, inputs: Sequence[Any]) -> list[np.ndarray]:
        """Inputs as arrays of exactly the unbatched shape and type, or this request alone fails."""
        if len(inputs) != len(self._expected):
            raise ShapeMismatchError(f"{self.device_name}: got {len(inputs)} inputs, the model has "
                                     f"{len(self._expected)}")
        result = []
        for value, (shape, dtype), info in zip(inputs, self._expected, self.input_infos):
            arr = np.asarray(value)
            if arr.shape != shape:
                raise ShapeMismatchError(
                    f"The input tensor size is not equal to the model input type: got {list(arr.shape)} "
                    f"expecting {list(shape)} (input '{info.name}' of {self.device_name})")
            if arr.dtype != dtype:
                raise TypeMismatchError(f"input '{info.name}' of {self.device_name} expects {dtype} "
                                        f"elements, got {arr.dtype}")
            result.append(arr)
        return result

    def _take_all(self) -> list[_Pending]:
        items = list(self._pending)
        self._pending.clear()
        return items

    def _assign(self, items: list[_Pending], me: _Pending | None) -> None:
        """Give each taken request its role (called under the lock; wakes all but ``me``)."""
        k = len(items)
        if k == self.batch_size or k >= self.pad_rule.pad_from:
            leader = me if me in items else items[0]
            leader.role = lambda: self._run_batch(items)
            holders = [leader]
            self.counts["full" if k == self.batch_size else "padded"] += 1
        else:
            for item in items:
                item.role = lambda item=item: self._run_single(item)
            holders = items
            self.counts["single"] += k
        for item in holders:
            if item.on_done is not None:  # nobody waits in infer(): a request thread does the work
                self._request_executor().submit(self._serve, item)
            elif item is not me:
                item.signal()

    def _serve(self, item: _Pending) -> tuple[list[Any], list | None]:
        if item.on_done is not None:  # an infer_async request: do its role; the role completes it
            role, item.role = item.role, None
            if role is not None:
                role()
            return item.outputs, item.timings
        if item.role is None and not item.done:
            item.wake.acquire()  # until given a role (then it finishes the work itself) or a result
        if item.role is not None:
            role, item.role = item.role, None
            role()
        if item.error is not None:
            raise item.error
        return item.outputs, item.timings

    def _run_batch(self, items: list[_Pending]) -> None:
        """One batched inference (padded with the last request's inputs); scatter copies back."""
        try:
            pad = self.batch_size - len(items)
            feeds = [np.concatenate([it.inputs[i] for it in items] + [items[-1].inputs[i]] * pad, axis=0)
                     for i in range(len(self._expected))]
            with self._batch_slots:
                outputs, timings = self._batched.infer(feeds, profile=any(it.profile for it in items))
            for row, item in enumerate(items):
                item.outputs = [np.array(out[row:row + 1], copy=True) for out in outputs]
                item.timings = timings
        except Exception as exc:  # noqa: BLE001 - every request of this batch gets the error
            log.warning("%s: a batch of %d request(s) failed: %s", self.device_name, len(items), exc)
            for item in items:
                item.outputs, item.error = None, _error_copy(exc)
        finally:
            for item in items:
                item.done = True
                item.signal()

    def _run_single(self, item: _Pending) -> None:
        try:
            item.outputs, item.timings = self._unbatched.infer(item.inputs, profile=item.profile)
        except Exception as exc:  # noqa: BLE001 - raised from this request's infer
            item.error = exc
        finally:
            item.done = True
            if item.on_done is not None:
                item.signal()

    def _flush_due_in(self) -> float | None:
        """Seconds until the oldest pending request's timeout (<= 0: now); None if none is pending."""
        if not self._pending:
            return None
        return self._pending[0].arrived + self._timeout_ms / 1e3 - time.monotonic()

    # -- properties -----------------------------------------------------------------------------
    def get_property(self, key: str) -> Any:
        """BATCH's compiled-model keys; anything else is the unbatched child's."""
        key = _key(key)
        if key == "SUPPORTED_PROPERTIES":
            return dict(self._SUPPORTED)
        if key == "AUTO_BATCH_TIMEOUT":
            return self._timeout_ms
        if key == "MULTI_DEVICE_PRIORITIES":
            return f"{self._device_label}({self.batch_size})"
        if key == "OPTIMAL_NUMBER_OF_INFER_REQUESTS":
            return self._optimal_requests()
        return self._unbatched.get_property(key)

    def _optimal_requests(self) -> int:
        child = int(self._unbatched.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        if self._batched is None:
            return child
        cap = self._num_requests
        return max(self.batch_size, cap) if cap else self.batch_size * max(1, child)

    def set_property(self, properties: Mapping[str, Any]) -> None:
        """Only ``AUTO_BATCH_TIMEOUT`` (ms) can change after compiling; it applies to pending requests too."""
        values = {_key(k): v for k, v in properties.items()}
        for key in values:
            if key != "AUTO_BATCH_TIMEOUT":
                raise PropertyError(f"{self.device_name}: only AUTO_BATCH_TIMEOUT can be set on a compiled "
                                    f"BATCH model, not {key}; set it in compile_model's config")
        if not values:
            return
        timeout = _validate_timeout(values["AUTO_BATCH_TIMEOUT"])
        with self._cond:
            self._timeout_ms = timeout
            if timeout == 0 and self._pending:
                self._assign(self._take_all(), None)
            self._cond.notify_all()

    def export_model(self) -> Any:
        """BATCH cannot be exported (as OpenVINO)."""
        raise BatchNotSupportedError("Not Implemented: BATCH compiled models cannot be exported; "
                                     "export the model compiled on the device itself")


def _gather(ref: weakref.ref, cond: threading.Condition) -> None:
    """The gathering thread: when the oldest pending request has waited the timeout, run them."""
    with cond:
        while True:
            model = ref()
            if model is None or model._closed:
                return
            due_in = model._flush_due_in()
            if due_in is not None and due_in <= 0:
                model.counts["timeouts"] += 1
                model._assign(model._take_all(), None)
                continue
            del model  # hold it only weakly while waiting
            cond.wait(due_in)


def _notify(cond: threading.Condition) -> None:
    with cond:
        cond.notify_all()
