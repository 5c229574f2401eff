"""Listeners on Locust's events, added together and removed together."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from locust.event import EventHook


class Subscriptions:
    """Adds each ``(hook, handler)`` now; :meth:`cancel` removes them all (for an exporter closed)."""

    def __init__(self, *pairs: tuple[EventHook, Callable[..., Any]]) -> None:
        self._pairs = pairs
        for hook, handler in pairs:
            hook.add_listener(handler)

    def cancel(self) -> None:
        for hook, handler in self._pairs:
            hook.remove_listener(handler)
