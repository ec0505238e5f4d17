"""Framework exporters warn and log about their own internals while converting; keep that
off the user's screen (at debug level in our log) and off pytest's warnings-as-errors."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

log = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet(*loggers: str) -> Iterator[None]:
    """Within: the named loggers show errors only, and every warning is recorded at
    debug level instead of shown."""
    noisy = [logging.getLogger(name) for name in loggers]
    levels = [logger.level for logger in noisy]
    for logger in noisy:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for warning in caught:
            log.debug("exporter warning: %s", warning.message)
    finally:
        for logger, level in zip(noisy, levels, strict=True):
            logger.setLevel(level)
