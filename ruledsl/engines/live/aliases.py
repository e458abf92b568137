"""Which log key a rule's metric stands for in the run (docs/language.md §2), decided as rows arrive.

Of the candidates (the name, then the catalog's keys), the one appearing first
wins; a tie at the same step goes to the earlier candidate. The choice is
made at the first step where any candidate appears, and stays open while rows
of that same step arrive (a later row of the step may bring an earlier
candidate); once a larger step arrives it is final.
"""

from __future__ import annotations

from collections.abc import Mapping


class Resolver:
    __slots__ = ("candidates", "key", "step")

    def __init__(self, candidates: tuple[str, ...]):
        self.candidates = candidates
        self.key: str | None = None
        self.step: int | None = None  # the step at which `key` was chosen

    def settled(self, open_step: int | None) -> bool:
        """Chosen for good: chosen at a step other than `open_step`, the one whose rows may still come."""
        return self.key is not None and self.step != open_step

    def resolve(self, step: int, row: Mapping[str, float]) -> bool:
        """Choose from the merged row of `step` if still open; True when the choice changed."""
        if self.settled(step):
            return False
        chosen = next((k for k in self.candidates if k in row), None)
        if chosen is None or chosen == self.key:
            return False
        self.key, self.step = chosen, step
        return True
