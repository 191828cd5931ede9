"""The cluster layer: a Ray cluster's devices as ``KIND[.ID]@node`` devices of a Core.

>>> import infermux as im
>>> core = im.Core(cluster="auto")                                   # doctest: +SKIP
>>> core.available_devices                                           # doctest: +SKIP
['CPU', 'CPU@head', 'CPU@node-b', 'VPU@node-b', 'GPU.0@node-c', 'GPU.1@node-c']
>>> compiled = core.compile_model(model, "MULTI:CPU@head,CPU@node-b")   # doctest: +SKIP

Nothing here is imported, and Ray is not imported, until a Core is created with ``cluster=``.
The parts: :mod:`~infermux.cluster.discovery` (nodes and their devices),
:mod:`~infermux.cluster.actors` (one Ray actor per device, hosting its plugin),
:mod:`~infermux.cluster.channel` (the data plane: ZeroMQ frames) and
:mod:`~infermux.cluster.shm` (its shared-memory regions),
:mod:`~infermux.cluster.worker` (the plugin and compiled-model protocols over the actors) and
:mod:`~infermux.cluster.jobs` (batch inference through Ray's job submission).
``docs/cluster.md`` says how to run a cluster and what the data plane measured.
"""

from __future__ import annotations

import logging
import os
from typing import Any

__all__ = ["connect", "ensure_ray"]

log = logging.getLogger(__name__)


def ensure_ray(address: str | None = "auto") -> None:
    """Connect this process to Ray unless it already is.

    ``address``: ``"auto"`` (the cluster this machine belongs to, or ``RAY_ADDRESS``), ``"local"``
    (start a private single-node cluster, no dashboard), ``"host:port"`` or ``"ray://host:10001"``.
    """
    import ray

    if ray.is_initialized():
        return
    if address in (None, "", "auto"):
        address = os.environ.get("RAY_ADDRESS") or "auto"
    if address == "local":
        ray.init(address="local", include_dashboard=False, logging_level="WARNING")
    else:
        ray.init(address=address, logging_level="WARNING")
    log.info("connected to the Ray cluster at %s", address)


def connect(address: str | None = "auto", **options: Any):
    """A resolver of the cluster's devices for ``Core(cluster=...)``; connects to Ray first.

    ``options`` go to :class:`~infermux.cluster.worker.ClusterResolver`: ``plugins`` (kind ->
    ``"module:attr"`` or ``("module:attr", {kwargs})`` hosted by the device actors), ``relocate``,
    ``resource_share``, ``transport``, ``placement_timeout_s``, ``restart_timeout_s``.

    >>> from infermux.cluster import connect
    >>> resolver = connect("127.0.0.1:6379", plugins={"VPU": ("infermux.devices.vpu:VPUPlugin",
    ...                                                       {"emulate": True})})  # doctest: +SKIP
    >>> core = im.Core(cluster=resolver)                                             # doctest: +SKIP
    """
    ensure_ray(address)
    from infermux.cluster.worker import ClusterResolver

    return ClusterResolver(**options)
