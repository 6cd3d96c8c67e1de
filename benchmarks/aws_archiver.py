"""CPU time of the AWS raw archiver (`pipeline_aws.archive`) per record, for the sizing constants.

    python benchmarks/aws_archiver.py [--records 4000] [--runs 7]

Builds a Kinesis event of synthetic JSON records (like the bundled example's transactions) for several
record sizes and times what the handler does with a batch before its one S3 PUT: base64-decode every
record, join them with newlines and gzip the result (`pipeline_aws.archive.archive_body`). Prints the
median microseconds per record and per KiB of record, and the compression ratio.

`pipeline_aws.sizing.ARCHIVE_US_PER_KIB` (CPU per KiB at one full vCPU) comes from this script; Lambda
gives a function `memory / 1,769 MB` of a vCPU, which the sizing applies on top.
"""

from __future__ import annotations

import argparse
import base64
import random
import statistics
import time
from typing import Any

from pipeline_aws.archive import archive_body
from sample_records import record


def event(records: int, size: int) -> list[dict[str, Any]]:
    rng = random.Random(size)
    return [{"eventSource": "aws:kinesis", "eventID": f"shardId-000000000000:{i}",
             "kinesis": {"sequenceNumber": str(i), "data": base64.b64encode(record(size, rng)).decode()}} for i in range(records)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    print(f"{'record bytes':>12} {'us/record':>10} {'us/KiB':>8} {'gzip ratio':>10}")
    for size in (300, 700, 2_000, 8_000):
        batch = event(args.records, size)
        raw = sum(len(base64.b64decode(r["kinesis"]["data"])) + 1 for r in batch)
        times = []
        for _ in range(args.runs):
            start = time.process_time()
            body = archive_body(batch)
            times.append(time.process_time() - start)
        per_record = statistics.median(times) / args.records * 1e6
        print(f"{size:>12,} {per_record:>10.2f} {per_record / (size / 1024):>8.2f} {raw / len(body):>10.1f}")


if __name__ == "__main__":
    main()
