"""Kernels, one op family per module, registered by decorator (see :mod:`infermux.ops.registry`).

Every module in this package except ``registry`` and ``_private`` helpers is imported on first
lookup, so adding an op is adding a file.
"""

import warnings

from infermux.ops.registry import DEFAULT_DOMAIN, Kernel, kernel, lookup, lookup_or_none, registered_ops

# ONNX defines the results of overflow, 0/0, log(0) ... (inf, nan), and runtimes do not warn about
# them.  NumPy attributes its floating-point warnings to the calling module, so this filter
# silences exactly the kernels' own arithmetic, at no per-call cost, and nothing of the user's.
warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"infermux\.ops(\.|$)")

__all__ = ["DEFAULT_DOMAIN", "Kernel", "kernel", "lookup", "lookup_or_none", "registered_ops"]
