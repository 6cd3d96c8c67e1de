"""CPU time and memory of the Azure raw archiver (`pipeline_azure.archive`) per event, for its sizing constants.

    python benchmarks/azure_archiver.py [--events 10000] [--runs 5]

Builds what the Functions Python worker receives for one Event Hubs batch (`cardinality: many`): the bodies as a
`collection_bytes` datum and the `SystemPropertiesArray` trigger metadata, for synthetic JSON records of several
sizes (the same generator as benchmarks/aws_archiver.py). It times, per batch, what the worker and the archiver do
in Python: the worker's conversion into `azure.functions.EventHubEvent` objects (`EventHubTriggerConverter.decode`)
and the archiver's `get_body()` + join + gzip (`pipeline_azure.archive.archive_body`). Prints microseconds per event
and per KiB, the gzip ratio, and the peak Python memory the batch takes (tracemalloc) per event and per KiB.

The sizing constants in `pipeline_azure.sizing` (ARCHIVE_US_PER_EVENT, ARCHIVE_US_PER_KIB, ARCHIVE_BYTES_PER_EVENT)
come from this script with a margin: the Functions host's own (.NET) work per event - AMQP receive, the gRPC message
to the worker - is not measured here and is covered by doubling the per-event figure.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import tracemalloc
from types import SimpleNamespace

from azure.functions import meta
from azure.functions.eventhub import EventHubTriggerConverter
from pipeline_azure.archive import archive_body
from sample_records import record


def worker_input(events: int, size: int) -> tuple[meta.Datum, dict[str, meta.Datum]]:
    """The bodies and trigger metadata the host sends the worker for one batch of one partition."""
    rng = random.Random(size)
    bodies = [record(size, rng) for _ in range(events)]
    system = [{"EnqueuedTimeUtc": "2026-11-01T10:00:00.123Z", "SequenceNumber": 500 + i, "Offset": (500 + i) * 512,
               "PartitionKey": f"card-{i % 97}"} for i in range(events)]
    metadata = {
        "SystemPropertiesArray": meta.Datum(json.dumps(system), "json"),
        "PartitionContext": meta.Datum(json.dumps({"PartitionId": "3", "EventHubName": "records", "ConsumerGroup": "raw_archive"}), "json"),
    }
    return meta.Datum(SimpleNamespace(bytes=bodies), "collection_bytes"), metadata


def run_batch(data: meta.Datum, metadata: dict[str, meta.Datum]) -> bytes:
    events = EventHubTriggerConverter.decode(data, trigger_metadata=metadata)
    assert isinstance(events, list)
    return archive_body(event.get_body() for event in events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"{'record bytes':>12} {'us/event':>9} {'convert us/event':>16} {'us/KiB':>7} {'gzip ratio':>10} {'peak B/event':>12} {'peak B/KiB':>10}")
    for size in (100, 300, 700, 2_000, 8_000):
        data, metadata = worker_input(args.events, size)
        raw = sum(len(b) + 1 for b in data.value.bytes)
        totals, converts = [], []
        body = b""
        for _ in range(args.runs):
            start = time.process_time()
            events = EventHubTriggerConverter.decode(data, trigger_metadata=metadata)
            middle = time.process_time()
            assert isinstance(events, list)
            body = archive_body(event.get_body() for event in events)
            totals.append(time.process_time() - start)
            converts.append(middle - start)
        tracemalloc.start()
        run_batch(data, metadata)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        per_event = statistics.median(totals) / args.events * 1e6
        convert = statistics.median(converts) / args.events * 1e6
        print(f"{size:>12,} {per_event:>9.2f} {convert:>16.2f} {per_event / (size / 1024):>7.2f} {raw / len(body):>10.1f} "
              f"{peak / args.events:>12,.0f} {peak / (raw / 1024):>10,.0f}")


if __name__ == "__main__":
    main()
