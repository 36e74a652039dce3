"""Which model version answers a frame and who else sees it: the seam between ingest and rollouts.

Ingest owns these protocols; the rollout package implements them (its state is a :class:`Route`, its
follower a :class:`Router`). With no router, or no route, every frame goes to the configured
ensemble.
"""

from __future__ import annotations

from typing import Protocol


class Route(Protocol):
    """One rollout's traffic split: live answers, canary cameras go to the candidate, shadowed frames to both."""

    @property
    def rollout_id(self) -> str: ...

    @property
    def live_ensemble(self) -> str: ...

    @property
    def candidate_ensemble(self) -> str | None: ...

    def serves_candidate(self, camera_id: str) -> bool:
        """The candidate answers this camera's frames (sticky per camera)."""
        ...

    def shadows(self, camera_id: str, frame_index: int) -> bool:
        """This live frame is also sent to the candidate, for judging only."""
        ...


class Router(Protocol):
    def current(self) -> Route | None:
        """The route for the next batch; ``None`` when no rollout runs."""
        ...
