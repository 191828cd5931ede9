"""``AsyncInferQueue``: a pool of infer requests fed from one call site (OpenVINO's Python helper).

``start_async`` blocks until a request is idle; one callback serves every job and gets
``(request, userdata)``; an exception raised by the callback or by an inference resurfaces from
``wait_all`` with its own type.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from typing import Any

from infermux.scheduler.requests import InferRequest

__all__ = ["AsyncInferQueue"]


class AsyncInferQueue:
    """``AsyncInferQueue(compiled_model, jobs=0)``; ``jobs=0`` means the optimal request count.

    >>> q = AsyncInferQueue(compiled, 4)                                  # doctest: +SKIP
    >>> q.set_callback(lambda req, i: print(i, req.results[0].shape))     # doctest: +SKIP
    >>> for i, x in enumerate(batches): q.start_async({"data": x}, i)     # doctest: +SKIP
    >>> q.wait_all()                                                       # doctest: +SKIP
    """

    def __init__(self, compiled_model, jobs: int = 0):
        n = int(jobs) or int(compiled_model.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._requests: list[InferRequest] = [compiled_model.create_infer_request() for _ in range(max(1, n))]
        self._idle: collections.deque[int] = collections.deque()
        self._idle_changed = threading.Condition()
        self._userdata: list[Any] = [None] * len(self._requests)
        self._callback: Callable[[InferRequest, Any], Any] | None = None
        self._errors: list[BaseException] = []
        self._errors_lock = threading.Lock()
        for i, request in enumerate(self._requests):
            request.set_callback(self._finished, i)
            self._idle.append(i)

    def _finished(self, index: int) -> None:
        request = self._requests[index]
        try:
            if request._error is not None:
                with self._errors_lock:
                    self._errors.append(request._error)
            elif self._callback is not None:
                self._callback(request, self._userdata[index])
        except BaseException as exc:  # noqa: BLE001 - surfaced by wait_all
            with self._errors_lock:
                self._errors.append(exc)
        finally:
            self._release(index)

    def _release(self, index: int) -> None:
        with self._idle_changed:
            self._idle.append(index)
            self._idle_changed.notify_all()

    def _take(self) -> int:
        with self._idle_changed:
            self._idle_changed.wait_for(lambda: self._idle)
            return self._idle.popleft()

    def set_callback(self, callback: Callable[[InferRequest, Any], Any]) -> None:
        """Call ``callback(request, userdata)`` when each job ends."""
        self._callback = callback

    def start_async(self, inputs: Any = None, userdata: Any = None, share_inputs: bool = False) -> None:
        """Run ``inputs`` on the next idle request (blocking until one is idle)."""
        index = self._take()
        self._userdata[index] = userdata
        try:
            self._requests[index].start_async(inputs, share_inputs=share_inputs)
        except BaseException:
            with self._idle_changed:
                self._idle.appendleft(index)
                self._idle_changed.notify_all()
            raise

    def wait_all(self) -> None:
        """Wait for every job; raise the first error a job or the callback raised."""
        for request in self._requests:
            request._done.wait()
        with self._errors_lock:
            errors, self._errors = self._errors, []
        if errors:
            raise errors[0]

    def is_ready(self) -> bool:
        """True if a request is idle."""
        with self._idle_changed:
            return bool(self._idle)

    def get_idle_request_id(self) -> int:
        """The id the next ``start_async`` will use (blocks until a request is idle)."""
        with self._idle_changed:
            self._idle_changed.wait_for(lambda: self._idle)
            return self._idle[0]

    @property
    def userdata(self) -> list[Any]:
        """The last userdata of every job."""
        return list(self._userdata)

    def __len__(self) -> int:
        return len(self._requests)

    def __getitem__(self, i: int) -> InferRequest:
        return self._requests[i]

    def __iter__(self) -> Iterator[InferRequest]:
        return iter(self._requests)
