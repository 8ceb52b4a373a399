"""What routes need from the app: ``AppContext``, kept on ``app.state.context``."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from service.errors import Unavailable
from service.frontend.api.bodies import BodyBudget
from service.frontend.api.offload import CpuOffload
from service.frontend.api.validation import RequestRules
from service.metrics import ServiceMetrics
from service.registry import ModelRegistry, ServedModel
from service.settings import Settings


@dataclass(frozen=True)
class AppContext:
    """What routes need, kept on ``app.state.context`` by the app factory."""

    settings: Settings
    registry: ModelRegistry
    metrics: ServiceMetrics
    offload: CpuOffload
    """Where large bodies are decoded and large responses encoded."""
    bodies: BodyBudget
    """The bytes of request bodies this process holds while they arrive and are decoded."""
    _rules: dict[ServedModel, RequestRules] = field(default_factory=dict)

    def rules(self, served: ServedModel) -> RequestRules:
        """What a request to ``served`` may hold: made once per model version, not per request."""
        rules = self._rules.get(served)
        if rules is None:
            rules = self._rules[served] = RequestRules.of(served.spec, self.settings)
        return rules


def context(request: Request) -> AppContext:
    """The app's context, or 503 while the app has none (starting, or stopped)."""
    ctx: AppContext | None = getattr(request.app.state, "context", None)
    if ctx is None:
        raise Unavailable("the server is starting")
    return ctx
