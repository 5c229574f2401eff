"""The decorator form of ``time()`` and ``track_inprogress()`` (called by the native ``Timer``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def timed(func: F, new_timer: Callable[[], AbstractContextManager[Any]]) -> F:
    """``func`` wrapped so that each call runs inside a fresh timer: overlapping calls (greenlets) don't share one."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with new_timer():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
