"""Rate limiting of failed link lookups, per client address.

Someone guessing tokens (or access codes) fails a lot; a specialist with a good link fails rarely. Each
failure (unknown, expired, revoked or locked token, wrong access code) is counted for the client address;
past ``max_failures`` within ``window`` seconds the address gets 429 for link requests until the oldest
failure ages out.

State is a bounded in-memory map (``max_clients`` addresses, least recently failing dropped first), so
memory cannot grow without limit under a spray of addresses. Multi-worker story: each worker counts on its
own, so N workers behind a load balancer allow at most N x ``max_failures`` per window to one address. The
token's 192 bits make guessing hopeless either way; the limiter only cuts noise and load. A deployment
that wants one shared budget runs the viewer on one worker (it is light: images are cached) or puts the
limit in the load balancer. Access-code guessing is separately capped by the link itself (five wrong codes
lock it, in the database, so that limit holds across workers).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class FailureLimiter:
    """Counts failures per address in a sliding window; thread-safe; bounded memory."""

    def __init__(self, max_failures: int = 20, window: float = 600.0, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        # Lookups started but not yet judged, per address: a burst of parallel guesses must not all pass
        # the check before the first failure is counted.
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    def _prune(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try again; 0 when it is not blocked."""
        with self._lock:
            now = self._clock()
            times = self._prune(address, now)
            if times is None or len(times) < self.max_failures:
                return 0.0
            return max(1.0, times[0] + self.window - now)

    def begin(self, address: str) -> float:
        """Before a lookup: seconds to refuse for (as :meth:`retry_after`), ``-1.0`` when the address
        already has as many lookups in flight as it has failures left (wait a moment and ask again), or
        ``0.0`` with a place held for this lookup. Failures plus lookups in flight never exceed
        ``max_failures``, so a burst of parallel guesses cannot overrun the limit; a viewer with no failures
        still loads ``max_failures`` images at once. Call :meth:`finish` once the lookup is judged (after
        :meth:`failed` for a failure)."""
        with self._lock:
            now = self._clock()
            times = self._prune(address, now)
            failures = len(times) if times else 0
            if times is not None and failures >= self.max_failures:
                return max(1.0, times[0] + self.window - now)
            held = self._in_flight.get(address, 0)
            if failures + held >= self.max_failures:
                return -1.0
            self._in_flight[address] = held + 1
            return 0.0

    def finish(self, address: str) -> None:
        """Release the place :meth:`begin` held for ``address``."""
        with self._lock:
            held = self._in_flight.get(address, 0) - 1
            if held > 0:
                self._in_flight[address] = held
            else:
                self._in_flight.pop(address, None)

    def failed(self, address: str) -> None:
        """Count one failed lookup from ``address``."""
        with self._lock:
            now = self._clock()
            times = self._prune(address, now)
            if times is None:
                times = deque(maxlen=self.max_failures)
                self._failures[address] = times
            times.append(now)
            self._failures.move_to_end(address)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)

    def __len__(self) -> int:
        return len(self._failures)
