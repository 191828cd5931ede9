"""Worker pools shared by MULTI and AUTO: device slots, the request scheduler, worker threads.

A *pool* is one device compiled model (a worker, in DESIGN.md's sense: anything implementing the
device-compiled-model protocol, in this process or in a Ray actor) with a number of *slots*: the
most inferences it may run at once (``MULTI:GPU(4)`` -> 4, else the device's
``OPTIMAL_NUMBER_OF_INFER_REQUESTS``).  A :class:`RequestScheduler` hands each inference an idle
slot, never more than a pool's size, and queues it in arrival order when none is idle:

- ``DEVICE_PRIORITY`` (default): the idle slot of the highest-priority device ("GPU first, CPU
  when the GPU is busy");
- ``ROUND_ROBIN``: the starting device rotates with each request.

User requests are device-agnostic: an :class:`~infermux.scheduler.requests.InferRequest` calls
the virtual compiled model's ``infer``, which takes a slot, runs ``pool.model.infer`` in the
calling thread and gives the slot back.  :func:`run_with_fallback` re-runs a failed inference on
another device.  :class:`WorkerThreads` runs the asynchronous requests (``submit``); its thread
count grows on demand up to the number of slots.

>>> scheduler = RequestScheduler([DevicePool("GPU", gpu_model, 4), DevicePool("CPU", cpu_model, 2)])  # doctest: +SKIP
>>> pool = scheduler.acquire(); outputs = pool.model.infer(inputs); scheduler.release(pool)        # doctest: +SKIP
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import queue
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from infermux.devices.properties import SchedulePolicy
from infermux.errors import InfermuxError

__all__ = ["DevicePool", "NoWorkerError", "RequestScheduler", "WorkerThreads", "run_with_fallback"]

log = logging.getLogger(__name__)


class NoWorkerError(InfermuxError):
    """No pool is left that could run an inference (all excluded, retired or released)."""


@dataclasses.dataclass(eq=False)
class DevicePool:
    """One device's compiled model and its slots.  ``busy`` and ``served`` are kept by the scheduler."""

    name: str
    model: Any
    size: int
    label: str = ""  # what EXECUTION_DEVICES shows, e.g. '(CPU)' for AUTO's startup helper
    busy: int = 0
    served: int = 0
    retired: bool = False
    on_idle: Callable[[DevicePool], Any] | None = None  # called once a retired pool is idle

    def __post_init__(self) -> None:
        self.size = max(1, int(self.size))
        self.label = self.label or self.name


class _Waiter:
    __slots__ = ("error", "event", "exclude", "pool")

    def __init__(self, exclude: Collection[str]):
        self.exclude = exclude
        self.event = threading.Event()
        self.pool: DevicePool | None = None
        self.error: BaseException | None = None


class RequestScheduler:
    """Grants inferences idle slots of its pools by ``policy``; waiters are served first come first.

    ``acquire(exclude)`` blocks until a slot of a pool not named in ``exclude`` is idle, or raises
    :class:`NoWorkerError` when no such pool exists and none is being loaded (see
    :meth:`loading`): a request never waits for a device that cannot come.
    """

    def __init__(self, pools: Iterable[DevicePool] = (), policy: str = SchedulePolicy.DEVICE_PRIORITY,
                 name: str = "scheduler"):
        self._pools: list[DevicePool] = list(pools)
        self._policy = SchedulePolicy(str(policy))
        self._name = name
        self._lock = threading.Lock()
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._next_start = 0
        self._loading = 0
        self._closed: str | None = None

    # -- views --------------------------------------------------------------------------------
    @property
    def pools(self) -> list[DevicePool]:
        """The pools that take new requests, in priority order."""
        with self._lock:
            return list(self._pools)

    @property
    def policy(self) -> SchedulePolicy:
        """``DEVICE_PRIORITY`` or ``ROUND_ROBIN``."""
        return self._policy

    def total_slots(self) -> int:
        """Slots over every pool taking requests."""
        with self._lock:
            return sum(p.size for p in self._pools)

    # -- granting -----------------------------------------------------------------------------
    def acquire(self, exclude: Collection[str] = ()) -> DevicePool:
        """An idle slot of a pool not in ``exclude`` (waiting for one); release it after use."""
        with self._lock:
            if self._closed:
                raise NoWorkerError(self._closed)
            if not self._waiters:
                pool = self._pick(exclude)
                if pool is not None:
                    pool.busy += 1
                    return pool
            waiter = _Waiter(exclude)
            self._waiters.append(waiter)
            self._dispatch()
        waiter.event.wait()
        if waiter.error is not None:
            raise waiter.error
        return waiter.pool

    def release(self, pool: DevicePool) -> None:
        """Give a slot back; a retired pool that falls idle is handed to its ``on_idle``."""
        with self._lock:
            pool.busy -= 1
            pool.served += 1
            idle_retired = pool.retired and pool.busy == 0
            if self._waiters:
                self._dispatch()
        if idle_retired:
            self._recycle(pool)

    def _pick(self, exclude: Collection[str]) -> DevicePool | None:
        pools = self._pools
        n = len(pools)
        if self._policy == SchedulePolicy.ROUND_ROBIN and n > 1:
            start = self._next_start % n
            for k in range(n):
                pool = pools[(start + k) % n]
                if pool.busy < pool.size and pool.name not in exclude:
                    self._next_start = start + 1
                    return pool
            return None
        for pool in pools:
            if pool.busy < pool.size and pool.name not in exclude:
                return pool
        return None

    def _can_serve(self, exclude: Collection[str]) -> bool:
        return self._loading > 0 or any(p.name not in exclude for p in self._pools)

    def _dispatch(self) -> None:
        """Under the lock: grant idle slots to waiters in arrival order; fail hopeless waiters."""
        for waiter in list(self._waiters):
            pool = self._pick(waiter.exclude)
            if pool is not None:
                pool.busy += 1
                waiter.pool = pool
            elif self._closed or not self._can_serve(waiter.exclude):
                waiter.error = NoWorkerError(self._closed or self._no_pool_message(waiter.exclude))
            else:
                continue
            self._waiters.remove(waiter)
            waiter.event.set()

    def _no_pool_message(self, exclude: Collection[str]) -> str:
        if not self._pools:
            return f"{self._name}: no device is left to run the request"
        return (f"{self._name}: the request already failed on {', '.join(sorted(exclude))} and no "
                f"other device is available")

    # -- changing the pools -------------------------------------------------------------------
    def add(self, pool: DevicePool, index: int | None = None) -> None:
        """Start granting slots of ``pool`` (at priority ``index``; default last)."""
        with self._lock:
            self._pools.insert(len(self._pools) if index is None else index, pool)
            self._dispatch()

    def retire(self, pool: DevicePool) -> None:
        """Stop granting ``pool``; its ``on_idle`` runs once its running inferences end."""
        with self._lock:
            if pool not in self._pools:
                return
            self._pools.remove(pool)
            pool.retired = True
            idle = pool.busy == 0
            self._dispatch()
        if idle:
            self._recycle(pool)

    def replace(self, old: DevicePool, new: DevicePool) -> None:
        """``new`` takes ``old``'s place and priority; ``old`` is retired."""
        with self._lock:
            index = self._pools.index(old) if old in self._pools else 0
            self._pools.insert(index, new)
        self.retire(old)

    def begin_loading(self) -> None:
        """A device is being loaded: until :meth:`end_loading`, waiters with no pool wait for it."""
        with self._lock:
            self._loading += 1

    def end_loading(self) -> None:
        """The load begun by :meth:`begin_loading` is over (added or failed)."""
        with self._lock:
            self._loading -= 1
            self._dispatch()

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """``begin_loading``/``end_loading`` around a block."""
        self.begin_loading()
        try:
            yield
        finally:
            self.end_loading()

    def close(self, reason: str) -> None:
        """Fail every waiter and every later ``acquire`` with ``reason``."""
        with self._lock:
            self._closed = reason
            self._dispatch()

    @staticmethod
    def _recycle(pool: DevicePool) -> None:
        callback, pool.on_idle = pool.on_idle, None
        if callback is not None:
            try:
                callback(pool)
            except Exception as exc:  # noqa: BLE001 - recycling must not fail a request
                log.warning("releasing %s failed: %s", pool.name, exc)


def run_with_fallback(scheduler: RequestScheduler, inputs: Any, *, profile: bool = False, state: Any = None,
                      on_failure: Callable[[DevicePool, BaseException], bool] | None = None):
    """Run one inference on a slot of ``scheduler``; re-run it elsewhere while ``on_failure`` agrees.

    ``on_failure(pool, error)`` is called when the inference fails on ``pool``; True means "try
    another device" (the request then never returns to a device it failed on), False gives up.
    The error the user finally sees is the *first* one, so a fallback never hides the cause.
    """
    tried: list[str] = []
    first_error: BaseException | None = None
    home = getattr(state, "home", None)  # a stateful request stays on the device of its first run
    pinned = [p.name for p in scheduler.pools if p.name != home] if home is not None else []
    while True:
        try:
            pool = scheduler.acquire(tried + pinned)
        except NoWorkerError:
            if first_error is None:
                raise
            raise first_error from None
        try:
            if state is None:
                return pool.model.infer(inputs, profile=profile)
            result = pool.model.infer(inputs, profile=profile, state=state)
            if home is None:
                state.home = pool.name
            return result
        except Exception as exc:  # noqa: BLE001 - decided by on_failure
            first_error = first_error or exc
            tried.append(pool.name)
            if on_failure is None or not on_failure(pool, exc):
                raise first_error from None
            log.info("an inference failed on %s (%s); it runs again on another device", pool.name, exc)
        finally:
            scheduler.release(pool)


class WorkerThreads:
    """FIFO job threads, started on demand up to ``limit``; ``submit(fn) -> Future``.

    Unlike :class:`~concurrent.futures.ThreadPoolExecutor` the limit can grow (AUTO switches from
    a one-slot helper to a device with more slots), and the threads hold no reference to the
    compiled model that owns them, so dropping the model lets it be garbage-collected.
    """

    def __init__(self, limit: int, name: str = "infermux-worker"):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._limit = max(1, int(limit))
        self._name = name
        self._threads = 0
        self._idle = 0
        self._queued = 0
        self._stopping = 0  # stop marks queued by shutdown(), each one ends a thread

    def set_limit(self, limit: int) -> None:
        """Allow up to ``limit`` threads (never shrinks running ones)."""
        with self._lock:
            self._limit = max(self._limit, int(limit))

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on a worker thread, in submission order."""
        future: Future = Future()
        with self._lock:
            self._queued += 1
            self._jobs.put((future, fn))
            # idle threads take the stop marks queued before this job first
            if self._queued > self._idle - self._stopping and self._threads - self._stopping < self._limit:
                self._threads += 1
                threading.Thread(target=self._work, name=f"{self._name}-{self._threads}",
                                 daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
                if job is None:
                    self._threads -= 1
                    self._stopping -= 1
                    return
                self._queued -= 1
            future, fn = job
            del job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # noqa: BLE001 - delivered through the future
                    future.set_exception(exc)
            del future, fn  # hold nothing between jobs

    def shutdown(self) -> None:
        """Let the threads finish the queued jobs and exit (a later ``submit`` starts new ones)."""
        with self._lock:
            for _ in range(self._threads - self._stopping):
                self._jobs.put(None)
            self._stopping = self._threads
