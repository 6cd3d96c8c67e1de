"""Lambda concurrency: how a plan shares the account's pool, and what a user's reservation needs.

By default no function of the plan reserves concurrency. A reservation (`PutFunctionConcurrency`) must leave
the account at least 100 unreserved concurrent executions ("You can reserve concurrency for as many functions
as you like, as long as you leave at least 100 simultaneous executions unreserved",
https://docs.aws.amazon.com/lambda/latest/api/API_PutFunctionConcurrency.html), and "new AWS accounts have
reduced concurrency and memory quotas" (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html;
10 is common), so any reservation fails the first deploy on a fresh account. Every function therefore scales in
the account's unreserved pool, and the plan says how much of the documented default quota (1,000 per region) its
functions take at their peak. A stage the user caps (`clouds.aws.reserved_concurrency`) reserves exactly that, and
the deploy preflight reads the real account first (`pipeline_aws.quota`).

Windowed stages (a schedule or an HTTP stage over accumulated outputs) are serialised by the runtime's lease, not
by a concurrency of 1: their plan needs one execution at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

ACCOUNT_CONCURRENCY = 1000  # the default "Concurrent executions" quota per region
UNRESERVED_MINIMUM = 100  # what reservations must leave unreserved
NEW_ACCOUNT_CONCURRENCY = 10  # what a new account may start with
QUOTA_CODE = "L-B99A9384"  # Service Quotas: AWS Lambda, "Concurrent executions"
QUOTA_HINT = f"Service Quotas > AWS Lambda > Concurrent executions ({QUOTA_CODE})"


def unreserved_minimum(quota: int) -> int:
    """What reservations must leave unreserved: 100, or the whole quota of an account below that (such an account
    cannot reserve at all: Lambda answers "decreases account's UnreservedConcurrentExecution below its minimum value")."""
    return min(UNRESERVED_MINIMUM, quota)


@dataclass(frozen=True)
class Pool:
    """The plan's functions in one account's concurrency pool, at the documented default quota.

    `reserved`: the stages the user caps (each takes exactly its cap out of the pool); `peaks`: every other
    function's peak concurrent executions (stages by name, the raw archiver by its label)."""

    reserved: Mapping[str, int]
    peaks: Mapping[str, int] = field(default_factory=dict)
    quota: int = ACCOUNT_CONCURRENCY

    @property
    def unreserved(self) -> int:
        return self.quota - sum(self.reserved.values())

    def others(self, name: str) -> int:
        """Executions the plan's other unreserved functions use at their peak."""
        return sum(peak for label, peak in self.peaks.items() if label != name and label not in self.reserved)

    def available(self, name: str) -> int:
        """What is left in the unreserved pool for `name` while every other function runs at its peak."""
        return max(0, self.unreserved - self.others(name))

    @property
    def peak_total(self) -> int:
        """Executions the whole plan holds at once at its peak (reservations count in full)."""
        return sum(self.reserved.values()) + sum(peak for label, peak in self.peaks.items() if label not in self.reserved)

    def reservable(self) -> int:
        """What the default quota lets this plan reserve in total."""
        return self.quota - unreserved_minimum(self.quota)

    def explain(self, name: str, needed: int) -> list[str]:
        """Why an unreserved function can run `available(name)` executions, and what to do when that is short."""
        available = self.available(name)
        reserved = sum(self.reserved.values())
        lines = [f"not reserved: scales in the account's unreserved pool; of the default quota of {self.quota:,} concurrent executions "
                 f"per region, {reserved:,} reserved and {self.others(name):,} at the other functions' peaks leave {available:,} "
                 f"(it needs {needed:,} at its peak); new accounts may start with {NEW_ACCOUNT_CONCURRENCY}: check {QUOTA_HINT}; "
                 "an alarm fires on any throttle"]
        if available < needed:
            lines.append(f"this plan needs {self.peak_total:,} concurrent executions at its peak, more than the default quota of "
                         f"{self.quota:,}: request more in {QUOTA_HINT} before deploying")
        return lines
