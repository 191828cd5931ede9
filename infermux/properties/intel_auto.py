"""AUTO-plugin keys."""

from infermux.devices.properties import SchedulePolicy
from infermux.properties._keys import _key

__all__ = ["SchedulePolicy", "enable_startup_fallback", "enable_runtime_fallback", "schedule_policy",
           "device_bind_buffer"]

enable_startup_fallback = _key("ENABLE_STARTUP_FALLBACK")
enable_runtime_fallback = _key("ENABLE_RUNTIME_FALLBACK")
schedule_policy = _key("SCHEDULE_POLICY")
device_bind_buffer = _key("DEVICE_BIND_BUFFER")
