"""Token buckets: how much a connection or a client address may do, and how long to wait.

Pure arithmetic on a clock the caller passes in. A rate of 0 means no limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Client addresses remembered at most; past it, those whose bucket is full
# again (idle long enough to forget) are dropped first.
MAX_ADDRESSES = 100_000


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst if burst > 0 else max(rate, 1.0)
        self.tokens = self.burst
        self.stamp = now

    def take(self, amount: float, now: float) -> float:
        """Spend ``amount`` if there is enough: 0.0; else the seconds until there would be."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        # More than a whole burst (one big message) goes when the bucket is
        # full and leaves a debt, so the average rate still holds.
        if amount <= self.tokens or self.tokens >= self.burst:
            self.tokens -= amount
            return 0.0
        return (min(amount, self.burst) - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


@dataclass(slots=True)
class AddressLimiter:
    """One bucket per client address (new connections, or HTTP publishes)."""

    rate: float
    burst: float
    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def take(self, address: str, now: float, amount: float = 1.0) -> float:
        if self.rate <= 0:
            return 0.0
        bucket = self.buckets.get(address)
        if bucket is None:
            if len(self.buckets) >= MAX_ADDRESSES:
                self.forget_idle(now)
            bucket = self.buckets[address] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(amount, now)

    def forget_idle(self, now: float) -> None:
        """Drop addresses whose bucket has refilled: they would start full anyway."""
        for address in [a for a, b in self.buckets.items() if b.full(now)]:
            del self.buckets[address]


class PublishLimiter:
    """One connection's allowance: messages per second and bytes per second.

    Every message counts (publishes, subscriptions, token refreshes, pings and
    invalid ones alike): it is taken before the message is parsed."""

    __slots__ = ("bytes", "messages")

    def __init__(
        self, rate: float, burst: float, bytes_rate: float, bytes_burst: float, now: float
    ) -> None:
        self.messages = TokenBucket(rate, burst, now) if rate > 0 else None
        self.bytes = TokenBucket(bytes_rate, bytes_burst, now) if bytes_rate > 0 else None

    def take(self, size: int, now: float) -> float:
        """0.0 if this message may go; else seconds to wait."""
        wait = self.messages.take(1, now) if self.messages is not None else 0.0
        if not wait and self.bytes is not None:
            wait = self.bytes.take(size, now)
            if wait and self.messages is not None:
                self.messages.tokens += 1  # refused: the message allowance is not spent
        return wait
