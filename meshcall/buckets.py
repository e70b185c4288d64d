"""Token buckets: a burst, then a steady rate. Pure; time is passed in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)  # slots: the relay takes from one for every packet it forwards
class Bucket:
    burst: float
    per_second: float
    tokens: float = -1.0  # -1: full on first use
    when: float = 0.0

    @classmethod
    def bytes_per_second(cls, rate: float, now: float, min_burst: float = 65536.0) -> "Bucket":
        """A byte rate with a burst of one second's worth (at least `min_burst`, one
        large datagram and then some), full from `now`."""
        burst = max(float(rate), min_burst)
        return cls(burst, float(rate), burst, now)

    def available(self, now: float) -> float:
        """The tokens there are now."""
        if self.tokens < 0:
            self.tokens, self.when = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.when) * self.per_second)
        self.when = now
        return self.tokens

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend `cost` tokens if there are enough; False (and nothing spent) if not."""
        if self.available(now) < cost:
            return False
        self.tokens -= cost
        return True

    def full_at(self) -> float:
        """When this bucket is full again (and can be forgotten)."""
        if self.per_second <= 0:
            return float("inf")
        return self.when + (self.burst - max(self.tokens, 0.0)) / self.per_second


class Buckets:
    """One bucket per key (an address), forgetting full ones when it holds too many,
    so that many addresses cannot grow it without bound."""

    def __init__(self, burst: float, per_second: float, kept: int = 4096) -> None:
        self.burst = burst
        self.per_second = per_second
        self.kept = kept
        self._buckets: dict[str, Bucket] = {}

    def can_take(self, key: str, now: float) -> bool:
        """Whether one token is there, without spending it."""
        bucket = self._buckets.get(key)
        return bucket is None or bucket.available(now) >= 1

    def take(self, key: str, now: float, cost: float = 1.0) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(self.burst, self.per_second)
        ok = bucket.take(now, cost)
        if len(self._buckets) > self.kept:
            self._buckets = {k: b for k, b in self._buckets.items() if b.full_at() > now}
        return ok
