"""Fictitious names, drawn from a seeded generator so the same seed gives the same world.

Names are built from syllables, so no model has seen them before and a model that was not
trained on a fact cannot guess it from prior knowledge.
"""

from __future__ import annotations

import random

_ONSETS = [
    *("b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "l"),
    *("m", "n", "p", "r", "s", "st", "t", "th", "v", "w", "z"),
]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ai", "ea", "io", "ou"]
_CODAS = ["", "", "", "n", "r", "s", "l", "th", "nd", "x"]


class NameFactory:
    """Hands out names that are unique within one factory."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._used: set[str] = set()

    def word(self, syllables: tuple[int, int] = (2, 3)) -> str:
        """A new capitalised made-up word, never handed out before by this factory."""
        while True:
            count = self._rng.randint(*syllables)
            parts = [self._rng.choice(_ONSETS) + self._rng.choice(_VOWELS) for _ in range(count)]
            candidate = ("".join(parts) + self._rng.choice(_CODAS)).capitalize()
            if candidate not in self._used:
                self._used.add(candidate)
                return candidate

    def person(self) -> str:
        return f"{self.word()} {self.word()}"

    def place(self) -> str:
        return self.word() + self._rng.choice(["ford", "holm", "mere", "dale", "wick", "port"])

    def organisation(self) -> str:
        return f"{self.word()} {self._rng.choice(['Guild', 'Institute', 'Company', 'Society'])}"

    def title(self) -> str:
        return f"The {self.word()} of {self.word()}"

    def thing(self, kind: str) -> str:
        return f"{self.word()} {kind}"
