"""A clock the test moves by hand, for the parts that take one (breaker, sessions)."""

from __future__ import annotations

import time


class Clock:
    """A wall clock that stands still until the test moves it (starts at the real time,
    so a process on Redis server ``TIME`` agrees with it while it stands)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
