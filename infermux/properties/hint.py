"""``PERFORMANCE_HINT`` and the other hint keys, with their enums."""

from infermux.devices.properties import ExecutionMode, PerformanceMode, Priority
from infermux.properties._keys import _key

__all__ = ["PerformanceMode", "ExecutionMode", "Priority", "performance_mode", "num_requests",
           "inference_precision", "execution_mode", "model_priority", "allow_auto_batching",
           "model_distribution_policy"]

performance_mode = _key("PERFORMANCE_HINT")
num_requests = _key("PERFORMANCE_HINT_NUM_REQUESTS")
inference_precision = _key("INFERENCE_PRECISION_HINT")
execution_mode = _key("EXECUTION_MODE_HINT")
model_priority = _key("MODEL_PRIORITY")
allow_auto_batching = _key("ALLOW_AUTO_BATCHING")
model_distribution_policy = _key("MODEL_DISTRIBUTION_POLICY")
