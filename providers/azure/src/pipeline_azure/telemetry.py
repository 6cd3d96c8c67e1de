"""What each app sends to Application Insights (Log Analytics), tuned like the other clouds' logging, and what that costs.

Untuned, a Functions app logs per invocation an AppRequests row, the host's "Executing"/"Executed" AppTraces rows
and the handler's own lines, plus dependency rows for the host's storage calls (queue polls, checkpoints, leases)
and performance counters; that was priced as ~3 KiB per invocation. Lambda and Cloud Run log one platform record
and the runtime's one line per invocation. host.json `logging` (`HOST_LOGGING`) makes the Functions host do the
same (https://learn.microsoft.com/azure/azure-functions/configure-monitoring#configure-categories,
https://learn.microsoft.com/azure/azure-functions/functions-host-json#logging):

* `Host.Results` at Information: one AppRequests row per invocation (what the errors alert reads);
* `Function.<name>.User` at Information: the runtime's one JSON line per invocation ("batch done", with the
  dead-letter count the dead-letter alert reads) - its warnings and errors too;
* everything else at Warning: no "Executing"/"Executed" traces, no Host.Aggregator metric rows, no host chatter;
  the queue extension's "Moving message to queue 'objects-poison'" is a warning, so the poison alert still sees it;
* no dependency tracking (the host's own storage calls) and no performance counters;
* no sampling: every failed request and every dead-letter line must reach the alerts (Lambda's and Cloud Run's
  logs are not sampled either).

So each invocation sends two rows. Their billed size is an estimate (Azure bills a row's columns except a few
standard ones, https://learn.microsoft.com/azure/azure-monitor/logs/cost-logs#data-size-calculation): an AppRequests
row with the Functions host's custom dimensions ~0.9 KB, an AppTraces row with the runtime's line ~0.6 KB.
"""

from __future__ import annotations

from typing import Any

HOST_LOGGING: dict[str, Any] = {
    "logLevel": {
        "default": "Warning",
        "Host.Results": "Information",
        "Function": "Warning",
        "Host.Aggregator": "Warning",
    },
    "applicationInsights": {
        "samplingSettings": {"isEnabled": False},
        "enableDependencyTracking": False,
        "enablePerformanceCountersCollection": False,
    },
}


def host_logging(function_name: str) -> dict[str, Any]:
    """host.json `logging` for an app whose one function is `function_name`: its user category stays at Information."""
    levels = {**HOST_LOGGING["logLevel"], f"Function.{function_name}.User": "Information"}
    return {**HOST_LOGGING, "logLevel": levels}


REQUEST_ROW_BYTES = 900  # one AppRequests row (assumed)
TRACE_ROW_BYTES = 600  # the runtime's one AppTraces line per invocation (assumed)
BYTES_PER_INVOCATION = REQUEST_ROW_BYTES + TRACE_ROW_BYTES
NOTE = (f"{BYTES_PER_INVOCATION:,} B per invocation (assumed: one AppRequests row + the runtime's one AppTraces line; host logging at "
        "Warning otherwise, no dependency rows, no sampling)")
