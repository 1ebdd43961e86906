"""The value every metric returns: a number, or the reason it was not computed (never a made-up number)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MetricResult:
    """``value`` is None exactly when the metric did not run; ``status`` then says why, e.g.
    "not run: needs >= 3 frames" or "not run: needs CLIP weights (--clip PATH)"."""

    name: str
    value: float | None
    status: str = "ok"
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def ok(self) -> bool:
        return self.value is not None

    @classmethod
    def not_run(cls, name: str, needs: str, **details: Any) -> MetricResult:
        return cls(name, None, f"not run: needs {needs}", dict(details))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "status": self.status, "details": self.details}
