"""Kernels, one op family per module, registered by decorator (see :mod:`infermux.ops.registry`).

Every module in this package except ``registry`` and ``_private`` helpers is imported on first
lookup, so adding an op is adding a file.
"""

from infermux.ops.registry import DEFAULT_DOMAIN, Kernel, kernel, lookup, lookup_or_none, registered_ops

__all__ = ["DEFAULT_DOMAIN", "Kernel", "kernel", "lookup", "lookup_or_none", "registered_ops"]
