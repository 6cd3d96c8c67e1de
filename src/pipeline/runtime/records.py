"""The one record type a stream handler sees, whatever the cloud delivered.

A Kinesis record, a Pub/Sub message, an Event Hubs event and a line of a local input file all
become a `Record`, so a handler never touches a cloud SDK or an event shape.
"""

from __future__ import annotations

from typing import Any

from pipeline.runtime import fastjson


class Record:
    """One stream record: raw bytes plus where it came from.

    `record_id` is stable across redeliveries (Kinesis eventID, Pub/Sub messageId, Event Hubs
    partition:sequence, input line + content hash locally); `partition` and `sequence` order it.
    Slots keep construction cheap: one is built per record on the hot path.
    """

    __slots__ = ("arrival_time", "data", "key", "partition", "record_id", "sequence")

    def __init__(self, data: bytes, *, key: str | None = None, record_id: str = "", partition: str = "0",
                 sequence: str = "", arrival_time: float | None = None) -> None:
        self.data = data
        self.key = key
        self.record_id = record_id
        self.partition = partition
        self.sequence = sequence
        self.arrival_time = arrival_time

    def json(self) -> Any:
        """The data parsed as JSON; raises (so the record is dead-lettered) when it is not JSON."""
        return fastjson.loads(self.data)

    def text(self) -> str:
        return self.data.decode("utf-8")

    def describe(self) -> dict[str, Any]:
        """Identity fields for dead-letter entries and logs (no payload)."""
        return {"record_id": self.record_id, "key": self.key, "partition": self.partition,
                "sequence": self.sequence, "arrival_time": self.arrival_time}

    def __repr__(self) -> str:
        return f"Record(id={self.record_id!r}, key={self.key!r}, {len(self.data)} bytes)"
