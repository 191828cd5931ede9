"""``NUM_STREAMS`` and its special values."""

from infermux.properties._keys import _key

__all__ = ["num", "Num"]

num = _key("NUM_STREAMS")


class Num:
    """Special stream counts."""

    AUTO = "AUTO"
    NUMA = "NUMA"
