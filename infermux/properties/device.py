"""Device metric keys."""

from infermux.properties._keys import _key

__all__ = ["full_name", "type", "capabilities", "architecture", "priorities", "properties", "id"]

full_name = _key("FULL_DEVICE_NAME")
type = _key("DEVICE_TYPE")  # noqa: A001 - OpenVINO's name
capabilities = _key("OPTIMIZATION_CAPABILITIES")
architecture = _key("DEVICE_ARCHITECTURE")
priorities = _key("MULTI_DEVICE_PRIORITIES")
properties = _key("DEVICE_PROPERTIES")
id = _key("DEVICE_ID")  # noqa: A001 - OpenVINO's name
