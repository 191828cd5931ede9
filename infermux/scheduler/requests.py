"""Infer requests and their results, written against the device-compiled-model protocol.

An :class:`InferRequest` checks and converts its inputs once at the boundary (names, indices or
ports; dtype conversion; shape against the model's bounds), runs synchronously in the caller's
thread or asynchronously on the compiled model's executor, and keeps its last results.  A
failure is stored on the request that failed and raised from its ``wait``: it never touches the
compiled model or other requests.
"""

from __future__ import annotations

import operator
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from infermux.errors import (
    RequestBusyError, RequestCancelledError, ShapeMismatchError, TensorNameError, TypeMismatchError)
from infermux.graph.model import Output, ValueInfo
from infermux.graph.shape import Shape
from infermux.graph.tensor import Tensor
from infermux.ops.state import StateFrame

__all__ = ["InferRequest", "InferResults", "ProfilingInfo", "VariableState", "prepare_inputs"]


class VariableState:
    """One variable of one request: ``name``, ``state`` (get/set a Tensor), ``reset()``."""

    def __init__(self, name: str, frame: StateFrame, device_model: Any):
        self._name, self._frame, self._device = name, frame, device_model

    @property
    def name(self) -> str:
        """The variable id."""
        return self._name

    def get_name(self) -> str:
        """The variable id."""
        return self._name

    @property
    def state(self) -> Tensor:
        """The current value (the initial value before the first inference)."""
        value = self._frame.values.get(self._name)
        if value is None:
            value = self._device.initial_state(self._name)
        if value is None:
            raise RuntimeError(f"variable '{self._name}' has no value yet: its initial value is "
                               f"computed during the first inference")
        return Tensor(np.asarray(value), shared_memory=True)

    @state.setter
    def state(self, value: Any) -> None:
        arr = value.data if isinstance(value, Tensor) else np.asarray(value)
        self._frame.values[self._name] = np.array(arr, copy=True)

    def get_state(self) -> Tensor:
        """The current value."""
        return self.state

    def set_state(self, value: Any) -> None:
        """Replace the value."""
        self.state = value

    def reset(self) -> None:
        """Back to the initial value."""
        self._frame.values.pop(self._name, None)

    def __repr__(self) -> str:
        return f"<VariableState '{self._name}'>"


class ProfilingInfo:
    """One executed node's timing (``req.profiling_info`` entries)."""

    __slots__ = ("node_name", "node_type", "exec_type", "status", "real_time", "cpu_time")

    def __init__(self, node_name: str, node_type: str, seconds: float, exec_type: str = "") -> None:
        import datetime

        self.node_name, self.node_type = node_name, node_type
        self.exec_type = exec_type or node_type
        self.status = "EXECUTED"
        self.real_time = self.cpu_time = datetime.timedelta(seconds=seconds)

    def __repr__(self) -> str:
        return f"<ProfilingInfo {self.node_name} ({self.node_type}) {self.real_time.total_seconds() * 1e3:.3f} ms>"


class InferResults(Mapping):
    """A request's outputs, indexable by port, tensor name or index (OpenVINO's ``OVDict``)."""

    def __init__(self, ports: list[Output], values: list[Any]):
        self._ports, self._values = ports, values

    def _index(self, key) -> int:
        if isinstance(key, Output):
            for i, p in enumerate(self._ports):
                if p == key or p.any_name == key.any_name:
                    return i
        elif isinstance(key, str):
            for i, p in enumerate(self._ports):
                if key in p.names:
                    return i
        elif isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            if -len(self._ports) <= key < len(self._ports):
                return int(key) % len(self._ports)
        raise TensorNameError(f"no output {key!r}: the outputs are "
                              f"{', '.join(p.any_name for p in self._ports)}")

    def __getitem__(self, key):
        return self._values[self._index(key)]

    def __iter__(self) -> Iterator[Output]:
        return iter(self._ports)

    def __len__(self) -> int:
        return len(self._ports)

    def names(self) -> tuple[set[str], ...]:
        """Each output's names."""
        return tuple(p.names for p in self._ports)

    def to_dict(self) -> dict[Output, Any]:
        """{port: array}."""
        return dict(zip(self._ports, self._values))

    def to_tuple(self) -> tuple:
        """The arrays in output order."""
        return tuple(self._values)

    def __repr__(self) -> str:
        body = ", ".join(f"{p.any_name}: {getattr(v, 'shape', type(v).__name__)}"
                         for p, v in zip(self._ports, self._values))
        return f"<InferResults {{{body}}}>"


def _convert(value: Any, info: ValueInfo, copy: bool) -> Any:
    if info.kind == "sequence" or (info.kind == "optional" and isinstance(value, list)):
        if value is None or isinstance(value, list):
            return value
        raise TypeMismatchError(f"input '{info.name}' is a {info.kind}; pass a list of arrays")
    if info.kind == "optional" and value is None:
        return None
    if isinstance(value, Tensor):
        value = value.data
    arr = np.asarray(value)
    if arr.dtype.kind == "U":
        arr = arr.astype(object)
    want = info.element_type
    if not want.is_dynamic():
        dtype = want.to_dtype()
        if arr.dtype != dtype:
            if arr.dtype == object or dtype == object:
                raise TypeMismatchError(
                    f"input '{info.name}' expects {want.name} elements, got a {arr.dtype} array")
            arr = arr.astype(dtype)
            copy = False
    if info.shape is not None and not info.shape.accepts(arr.shape):
        if info.shape.is_dynamic:  # OpenVINO's words for a shape outside dynamic bounds
            raise ShapeMismatchError(
                f"Can not clone with new dims. Descriptor's shape: {info.shape} is incompatible "
                f"with provided dimensions: {Shape(arr.shape)} (input '{info.name}')")
        raise ShapeMismatchError(
            f"The input tensor size is not equal to the model input type: got {Shape(arr.shape)} "
            f"expecting {info.shape} (input '{info.name}')")
    return np.array(arr, copy=True) if copy else arr


def prepare_inputs(inputs: Any, infos: Sequence[ValueInfo], ports: Sequence[Output],
                   preset: Sequence[Any] | None = None, *, copy: bool = False) -> list[Any]:
    """Inputs in any accepted form -> a list in model-input order, converted and checked."""
    n = len(infos)
    values: list[Any] = list(preset) if preset is not None else [None] * n
    given = [False] * n
    if inputs is None:
        pass
    elif isinstance(inputs, Mapping):
        for key, value in inputs.items():
            i = _input_index(key, ports)
            values[i], given[i] = value, True
    elif isinstance(inputs, (list, tuple)) and not (n == 1 and infos[0].kind == "sequence"
                                                    and all(isinstance(v, np.ndarray) for v in inputs)):
        if len(inputs) > n:
            raise TensorNameError(f"got {len(inputs)} inputs for a model with {n}: "
                                  f"{', '.join(p.any_name for p in ports)}")
        for i, value in enumerate(inputs):
            values[i], given[i] = value, True
    else:
        if n != 1:
            raise TensorNameError(f"a single array was given but the model has {n} inputs "
                                  f"({', '.join(p.any_name for p in ports)}); pass a dict or a list")
        values[0], given[0] = inputs, True
    missing = [infos[i].name for i in range(n) if values[i] is None and infos[i].kind == "tensor"]
    if missing:
        raise TensorNameError(f"no value for input(s) {', '.join(missing)}; the model's inputs are "
                              f"{', '.join(p.any_name for p in ports)}")
    return [_convert(v, info, copy) if (g or preset is None) else v
            for v, info, g in zip(values, infos, given)]


class _FastBinder:
    """The common case in a few dict lookups: every input given, as an ndarray of the model's
    dtype and an accepted shape.  Anything else returns None and takes :func:`prepare_inputs`."""

    __slots__ = ("n", "index", "dtypes", "static", "lows", "highs")

    def __init__(self, infos: Sequence[ValueInfo], ports: Sequence[Output]):
        self.n = len(infos)
        self.index: dict[Any, int] = {}
        for i, p in enumerate(ports):
            for name in p.names:
                self.index[name] = i
            self.index[i] = i
        ok = all(v.kind == "tensor" and not v.element_type.is_dynamic() and v.shape is not None
                 for v in infos)
        self.dtypes = [v.element_type.to_dtype() for v in infos] if ok else None
        self.static = [tuple(d.get_length() for d in v.shape) if ok and v.shape.is_static else None
                       for v in infos]
        unbounded = 1 << 62
        self.lows = [tuple(d.min_length for d in v.shape) if ok else () for v in infos]
        self.highs = [tuple(d.max_length if d.max_length >= 0 else unbounded for d in v.shape)
                      if ok else () for v in infos]

    def _check(self, i: int, v: Any) -> bool:
        if type(v) is not np.ndarray or v.dtype != self.dtypes[i]:
            return False
        static = self.static[i]
        if static is not None:
            return v.shape == static
        shape = v.shape
        return (len(shape) == len(self.lows[i]) and all(map(operator.le, self.lows[i], shape))
                and all(map(operator.le, shape, self.highs[i])))

    def bind(self, inputs: Any) -> list[Any] | None:
        if self.dtypes is None:
            return None
        kind = type(inputs)
        if kind is dict:
            if len(inputs) != self.n:
                return None
            values: list[Any] = [None] * self.n
            index = self.index
            for key, value in inputs.items():
                i = index.get(key) if type(key) in (str, int) else None
                if i is None or values[i] is not None or not self._check(i, value):
                    return None
                values[i] = value
            return values
        if kind is np.ndarray:
            return [inputs] if self.n == 1 and self._check(0, inputs) else None
        if kind in (list, tuple) and len(inputs) == self.n:
            if all(self._check(i, v) for i, v in enumerate(inputs)):
                return list(inputs)
        return None


def _input_index(key: Any, ports: Sequence[Output]) -> int:
    if isinstance(key, Output):
        key = key.any_name
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if 0 <= key < len(ports):
            return int(key)
        raise TensorNameError(f"input index {key} is out of range: the model has {len(ports)} inputs")
    for i, p in enumerate(ports):
        if key in p.names:
            return i
    raise TensorNameError(f"Port for tensor name {key} was not found. The model's inputs are: "
                          f"{', '.join(p.any_name for p in ports)}")


class InferRequest:
    """One request: ``infer`` (sync) or ``start_async`` + ``wait``; one job at a time."""

    def __init__(self, device_model, input_ports: list[Output], output_ports: list[Output],
                 owner: Any = None):
        self._device = device_model
        self._in_ports, self._out_ports = input_ports, output_ports
        self._owner = owner
        self._input_values: list[Any] = [None] * len(input_ports)
        self._outputs: list[Any] = [None] * len(output_ports)
        self._timings: list | None = None
        self._lock = threading.Lock()
        self._busy = False
        self._done = threading.Event()
        self._done.set()
        self._future: Future | None = None
        self._error: BaseException | None = None
        self._cancelled = False
        self._callback: Callable[[Any], Any] | None = None
        self._callback_userdata: Any = None
        self.userdata: Any = None
        self._latency_ms = 0.0
        self._state = StateFrame() if getattr(device_model, "variables", None) else None
        self._binder = _FastBinder(device_model.input_infos, input_ports)
        self._infer_async = getattr(device_model, "infer_async", None)
        self._t0 = 0.0

    # -- running ----------------------------------------------------------------------------
    def _claim(self) -> None:
        with self._lock:
            if self._busy:
                raise RequestBusyError("Infer Request is busy")
            self._busy = True
            self._error = None
            self._cancelled = False

    def infer(self, inputs: Any = None, share_inputs: bool = False,
              share_outputs: bool = False) -> InferResults:
        """Run synchronously; returns the results (copies unless ``share_outputs``)."""
        self._claim()
        try:
            feeds = self._feeds(inputs, copy=False)
            self._execute(feeds)
        finally:
            with self._lock:
                self._busy = False
        if self._error is not None:
            raise self._error
        return self._results(copy=not share_outputs)

    def start_async(self, inputs: Any = None, userdata: Any = None, share_inputs: bool = False) -> None:
        """Start on the compiled model's executor and return at once."""
        self._claim()
        try:
            feeds = self._feeds(inputs, copy=not share_inputs)
        except BaseException:
            with self._lock:
                self._busy = False
            raise
        self.userdata = userdata
        self._done.clear()
        self._future = None
        start = self._infer_async
        if start is not None:
            # the device completes the request by callback (no thread parked per request)
            self._t0 = time.perf_counter()
            try:
                start(feeds, self._state, self._complete)
            except Exception as exc:  # noqa: BLE001 - refused at once: this request fails alone
                self._complete(None, None, exc)
        else:
            self._future = self._device.submit(lambda: self._run_async(feeds))

    def _feeds(self, inputs: Any, copy: bool) -> list[Any]:
        feeds = self._binder.bind(inputs)
        if feeds is None:
            preset = self._input_values if any(v is not None for v in self._input_values) else None
            feeds = prepare_inputs(inputs, self._device.input_infos, self._in_ports, preset=preset, copy=copy)
        elif copy:
            feeds = [v.copy() for v in feeds]
        self._input_values = feeds
        return feeds

    def _execute(self, feeds: list[Any]) -> None:
        t0 = time.perf_counter()
        try:
            if self._state is not None:
                self._outputs, self._timings = self._device.infer(feeds, state=self._state)
            else:
                self._outputs, self._timings = self._device.infer(feeds)
        except Exception as exc:  # noqa: BLE001 - stored; raised from wait()/infer()
            self._error = exc
        self._latency_ms = (time.perf_counter() - t0) * 1e3

    def _complete(self, outputs: list[Any] | None, timings: list | None, error: BaseException | None) -> None:
        """Completion callback for devices with ``infer_async``."""
        self._latency_ms = (time.perf_counter() - self._t0) * 1e3
        if error is not None:
            self._error = error
        else:
            self._outputs, self._timings = outputs, timings
        self._finish()

    def _run_async(self, feeds: list[Any]) -> None:
        if not self._cancelled:
            self._execute(feeds)
        self._finish()

    def _finish(self) -> None:
        with self._lock:
            self._busy = False
        callback, data = self._callback, self._callback_userdata
        try:
            if callback is not None and not self._cancelled:
                callback(data)
        finally:
            self._done.set()

    def wait(self) -> None:
        """Block until the running job ends; raise its error, if any."""
        self._done.wait()
        self._raise_if_failed()

    def wait_for(self, timeout: int) -> bool:
        """Wait up to ``timeout`` ms; True if the job ended (raising its error, if any)."""
        if timeout < 0:
            return self.wait() or True
        finished = self._done.wait(timeout / 1e3)
        if finished:
            self._raise_if_failed()
        return finished

    def _raise_if_failed(self) -> None:
        if self._cancelled:
            raise RequestCancelledError("Infer Request was canceled")
        if self._error is not None:
            raise self._error

    def cancel(self) -> None:
        """Cancel a job that has not finished; ``wait`` then raises."""
        with self._lock:
            if not self._busy:
                return
            self._cancelled = True
        future = self._future
        if future is not None and future.cancel():
            with self._lock:
                self._busy = False
            self._done.set()

    def set_callback(self, callback: Callable[[Any], Any], userdata: Any = None) -> None:
        """Call ``callback(userdata)`` after each asynchronous job, on the worker thread."""
        self._callback, self._callback_userdata = callback, userdata

    # -- tensors ----------------------------------------------------------------------------
    def _results(self, copy: bool) -> InferResults:
        values = [np.array(v, copy=True) if copy and isinstance(v, np.ndarray)
                  else np.asarray(v) if isinstance(v, np.generic) else v
                  for v in self._outputs]
        return InferResults(self._out_ports, values)

    @property
    def results(self) -> InferResults:
        """The last results."""
        return self._results(copy=False)

    def get_tensor(self, key) -> Tensor:
        """An input or output tensor by name or port."""
        for ports, values in ((self._in_ports, self._input_values), (self._out_ports, self._outputs)):
            for i, p in enumerate(ports):
                if (isinstance(key, Output) and key == p) or (isinstance(key, str) and key in p.names):
                    return Tensor(values[i], shared_memory=True) if values[i] is not None else Tensor(
                        p.element_type, [d.get_min_length() for d in p.partial_shape])
        raise TensorNameError(f"Port for tensor name {key} was not found.")

    def set_tensor(self, key, tensor: Tensor | np.ndarray) -> None:
        """Set an input by name or port."""
        i = _input_index(key, self._in_ports)
        self.set_input_tensor(i, tensor)

    def set_tensors(self, tensors: Mapping[Any, Any]) -> None:
        """Set several inputs."""
        for k, v in tensors.items():
            self.set_tensor(k, v)

    def set_input_tensor(self, index_or_tensor, tensor=None) -> None:
        """Set input ``index`` (or the only input)."""
        index = 0 if tensor is None else int(index_or_tensor)
        tensor = index_or_tensor if tensor is None else tensor
        info = self._device.input_infos[index]
        self._input_values[index] = _convert(tensor, info, copy=False)

    def set_input_tensors(self, tensors: Mapping[int, Any]) -> None:
        """Set inputs by index."""
        for i, t in tensors.items():
            self.set_input_tensor(i, t)

    def get_input_tensor(self, index: int = 0) -> Tensor:
        """Input tensor ``index``."""
        return self.get_tensor(self._in_ports[index])

    def get_output_tensor(self, index: int = 0) -> Tensor:
        """Output tensor ``index`` of the last run."""
        return self.get_tensor(self._out_ports[index])

    @property
    def input_tensors(self) -> list[Tensor]:
        """Every input tensor."""
        return [self.get_input_tensor(i) for i in range(len(self._in_ports))]

    @property
    def output_tensors(self) -> list[Tensor]:
        """Every output tensor."""
        return [self.get_output_tensor(i) for i in range(len(self._out_ports))]

    @property
    def model_inputs(self) -> list[Output]:
        """The compiled model's input ports."""
        return list(self._in_ports)

    @property
    def model_outputs(self) -> list[Output]:
        """The compiled model's output ports."""
        return list(self._out_ports)

    # -- state ------------------------------------------------------------------------------
    def query_state(self) -> list[VariableState]:
        """This request's variables (stateful models), one :class:`VariableState` each."""
        if self._state is None:
            return []
        return [VariableState(name, self._state, self._device) for name in self._device.variables]

    def reset_state(self) -> None:
        """Every variable back to its initial value."""
        if self._state is not None:
            self._state.values.clear()

    def get_compiled_model(self):
        """The compiled model this request belongs to."""
        return self._owner

    @property
    def latency(self) -> float:
        """Milliseconds the last run took."""
        return self._latency_ms

    @property
    def profiling_info(self) -> list[ProfilingInfo]:
        """Per-node timings of the last run (``PERF_COUNT`` on)."""
        return [ProfilingInfo(n, t, s) for n, t, s in (self._timings or [])]

    def get_profiling_info(self) -> list[ProfilingInfo]:
        """Per-node timings of the last run (``PERF_COUNT`` on)."""
        return self.profiling_info
