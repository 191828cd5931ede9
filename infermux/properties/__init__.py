"""Property keys as functions returning their string, as ``openvino.properties`` does.

>>> import infermux.properties as props, infermux.properties.hint as hints
>>> props.enable_profiling(), hints.performance_mode()
('PERF_COUNT', 'PERFORMANCE_HINT')
"""

from infermux.properties import device, hint, intel_auto, streams
from infermux.properties._keys import _key

__all__ = ["device", "hint", "intel_auto", "streams", "cache_dir", "enable_profiling",
           "inference_num_threads", "num_streams", "optimal_number_of_infer_requests",
           "supported_properties", "available_devices", "execution_devices", "model_name",
           "auto_batch_timeout", "loaded_from_cache"]


cache_dir = _key("CACHE_DIR")
enable_profiling = _key("PERF_COUNT")
inference_num_threads = _key("INFERENCE_NUM_THREADS")
num_streams = _key("NUM_STREAMS")
optimal_number_of_infer_requests = _key("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
supported_properties = _key("SUPPORTED_PROPERTIES")
available_devices = _key("AVAILABLE_DEVICES")
execution_devices = _key("EXECUTION_DEVICES")
model_name = _key("NETWORK_NAME")
auto_batch_timeout = _key("AUTO_BATCH_TIMEOUT")
loaded_from_cache = _key("LOADED_FROM_CACHE")
