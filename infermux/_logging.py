"""The one debug switch: ``INFERMUX_LOG_LEVEL=DEBUG`` adds a stderr handler to the
``infermux`` logger.  Without it the library configures nothing (a NullHandler)."""

import logging
import os


def configure_from_env() -> None:
    """Attach a stderr handler at ``$INFERMUX_LOG_LEVEL`` if that variable is set."""
    logger = logging.getLogger("infermux")
    logger.addHandler(logging.NullHandler())
    level = os.environ.get("INFERMUX_LOG_LEVEL")
    if level:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(level.upper())
