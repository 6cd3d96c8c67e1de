"""What a comparison holds: one column per cloud, and the clouds lined up for one spec.

The facts only, so the verdict's rules (`pipeline.verdict`) can read them without depending on the code that
plans the clouds (`pipeline.compare`), which in turn adds the verdict to what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline import workload as workloads
from pipeline.cost import CostEstimate
from pipeline.errors import Problem
from pipeline.faces import Compute, Limits
from pipeline.plan import Plan
from pipeline.sizing import HEADROOM, Latency
from pipeline.spec.model import PipelineSpec
from pipeline.summary import amount


@dataclass
class CloudColumn:
    """Everything known about one cloud for this spec. `problems` non-empty means it cannot be planned."""

    cloud: str
    title: str
    location: str
    plan: Plan | None = None
    problems: list[str] = field(default_factory=list)
    located: list[Problem] = field(default_factory=list)  # the same problems at their lines, with hints (see pipeline.cloud_checks)
    cost: CostEstimate | None = None
    cost_error: str = ""
    limits: Limits | None = None
    limits_error: str = ""
    latency_paths: list[Latency] = field(default_factory=list)
    # What the backend says about its own resource types, kept as data so a column can cross a process
    # boundary (`compare --jobs`) without importing the cloud's SDK on the other side.
    identities: int = 0
    permission_grants: int = 0
    grant_types: frozenset[str] = frozenset()
    key_settings: dict[str, tuple[str, ...]] = field(default_factory=dict)
    compute: dict[str, Compute] = field(default_factory=dict)  # stage -> what one invocation runs on, as planned
    data_protection: str = ""  # how long deleted or overwritten data stays recoverable, as planned and priced

    @property
    def ok(self) -> bool:
        return self.plan is not None

    @property
    def stream(self) -> dict[str, Any] | None:
        """The planned stream's sizing (None without a stream or a plan)."""
        return self.plan.sizing.get("stream") if self.plan else None

    @property
    def stages(self) -> dict[str, dict[str, Any]]:
        """Each stage's sizing as planned: records per invocation, concurrency, capacity, demand, latency."""
        return self.plan.sizing.get("stages", {}) if self.plan else {}

    @property
    def latency(self) -> Latency | None:
        """The slowest data path (kept in the JSON as `latency`; views show every path)."""
        return max(self.latency_paths, key=lambda latency: latency.typical_s, default=None)

    def reasons(self) -> list[str]:
        """Why this cloud cannot run the spec, located, without the cloud's name repeated after the location."""
        return [problem.replace(f": {self.title}: ", ": ", 1).removeprefix(f"{self.title}: ") for problem in self.problems]

    @property
    def verify_usd(self) -> float:
        """Monthly USD billed with prices the sheets mark for verification."""
        return sum(line.monthly_usd for line in self.cost.lines if line.verify) if self.cost else 0.0

    def totals(self) -> dict[str, Any]:
        if self.plan is None:
            return {}
        stream = self.stream
        return {
            "resources": len(self.plan.cloud_resources),
            "identities": self.identities,
            "permission_grants": self.permission_grants,
            "monthly_usd": round(self.cost.total, 2) if self.cost else None,
            "stream_capacity_records_per_second": stream["capacity_records_per_second"] if stream else None,
            "stream_capacity_bytes_per_second": stream["capacity_bytes_per_second"] if stream else None,
            "stream_units": _stream_units(stream) if stream else None,
        }


@dataclass
class Lineup:
    """The clouds lined up for one spec: each cloud's column and the workload they were all sized and priced for.
    The facts a verdict reads (`pipeline.verdict`); `pipeline.compare.Comparison` adds the verdict and the JSON."""

    pipeline: str
    stack: str
    free_tier: bool
    columns: list[CloudColumn]
    spec: PipelineSpec
    swept: str | None = None  # the workload field `compare --sweep` set for this point

    def roles(self) -> list[tuple[str, str]]:
        """Role keys in program order, across all planned clouds."""
        seen: dict[str, str] = {}
        for column in self.columns:
            if column.plan:
                for key, kind in column.plan.roles():
                    seen.setdefault(key, kind)
        return list(seen.items())

    def planned(self) -> list[CloudColumn]:
        return [c for c in self.columns if c.ok]

    def workload(self) -> dict[str, Any]:
        """The workload every cloud was priced and sized for, and where each number came from."""
        work = self.spec.workload
        origins = workloads.origins(self.spec, self.swept)
        data: dict[str, Any] = {"from_spec": "spec" in origins.values(), "record_bytes": work.record_bytes, "headroom": HEADROOM,
                                "origins": origins, "text": self.workload_text()}
        if self.spec.stream is not None:
            data["records_per_second"] = work.records_per_second
        if self.spec.uploads is not None:
            data["uploads"] = work.uploads.model_dump()
        if any(stage.trigger.http for stage in self.spec.stages):
            data["http"] = work.http.model_dump()
        data["stages"] = {stage.name: work.stage(stage.name).model_dump() for stage in self.spec.stages}
        return data

    def workload_text(self) -> str:
        """One line naming the priced workload and where its numbers came from, e.g.
        "1,500 records/s of 700 B (from the spec)"."""
        return workloads.phrase(self.spec, self.swept)

    def limit_problems(self, column: CloudColumn) -> list[str]:
        limits, plan = column.limits, column.plan
        if limits is None or plan is None:
            return []
        problems = []
        if self.spec.stream is not None and self.spec.workload.record_bytes > limits.max_record_bytes:
            problems.append(f"records of {self.spec.workload.record_bytes:,} bytes exceed the {limits.max_record_bytes:,}-byte maximum event size")
        stream = column.stream
        if stream and stream["capacity_records_per_second"] and self.spec.workload.records_per_second > stream["capacity_records_per_second"]:
            problems.append(f"{amount(self.spec.workload.records_per_second)} records/s exceed the stream's sized capacity of "
                            f"{stream['capacity_records_per_second']:,.0f} records/s")
        for name, stage in column.stages.items():
            if stage["demand_records_per_second"] > stage["capacity_records_per_second"]:
                problems.append(f"stage {name} carries {stage['capacity_records_per_second']:,.0f} rec/s, below its "
                                f"{stage['demand_records_per_second']:,.0f} rec/s")
        return problems


def _stream_units(stream: dict[str, Any]) -> str:
    units, name = stream["units"], stream["unit_name"]
    provisioned = f"{units} {name}{'s' if units != 1 else ''}" if units else name
    partitions = f", {stream['partitions']} partitions" if stream.get("partitions") and stream["partitions"] != units else ""
    return f"{provisioned} ({stream['mode']}{partitions})"
