"""Supervisor commands for CX analytics, the same over /ws/agent and REST (`/api/v1/analytics/...`).

Analytics spans every agent's calls, so like the rest of the supervisor API it needs the
supervisor role; an agent's token gets 403.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from callcue.analytics.service import Analytics, AnalyticsError
from callcue.egress.supervisor_api import CommandError

# (path under /api/v1, operation, takes a JSON body, method)
ROUTES: list[tuple[str, str, bool, str]] = [
    ("/analytics/drivers", "analytics_drivers", False, "GET"),
    ("/analytics/friction", "analytics_friction", False, "GET"),
    ("/analytics/kpis", "analytics_kpis", False, "GET"),
    ("/analytics/topics", "analytics_topics", False, "GET"),
    ("/analytics/topics/intent", "topic_to_intent", True, "POST"),
]


class AnalyticsCommands:
    def __init__(self, analytics: Analytics) -> None:
        self.analytics = analytics

    def ops(self) -> dict[str, Callable[[Any, dict[str, Any]], Any]]:
        return {"analytics_drivers": self.analytics_drivers, "analytics_friction": self.analytics_friction,
                "analytics_kpis": self.analytics_kpis, "analytics_topics": self.analytics_topics,
                "topic_to_intent": self.topic_to_intent}  # fmt: skip

    async def _ask(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        try:
            out: dict[str, Any] = await fn(*args)
            return out
        except AnalyticsError as e:
            raise CommandError("bad_request", 400, str(e)) from None
        except ValueError as e:  # a report's own refusal (an unknown `by`)
            raise CommandError("bad_request", 400, str(e)) from None

    async def analytics_drivers(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        return await self._ask(self.analytics.drivers, a)

    async def analytics_friction(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        return await self._ask(self.analytics.friction, a)

    async def analytics_kpis(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        return await self._ask(self.analytics.kpis, a)

    async def analytics_topics(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        return await self._ask(self.analytics.topics, a)

    async def topic_to_intent(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        """Audited twice over: `intent_examples_added` and `dataset_version_created` (learning)."""
        return await self._ask(self.analytics.make_intent, a, p.user_id)
