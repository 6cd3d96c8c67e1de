"""What a comparison concludes, and what it does not hold equal: the verdict's findings and the shared assumptions.

A cheapest cloud is only an answer when the clouds were asked the same question. So the verdict says,
besides the prices: which cloud was not priced and why, when a cloud's design delivers slower than
the spec asks (its price buys a slower pipeline), when the order of two clouds rests on prices the
sheets mark for verification, and what a cloud cannot carry. The assumptions say what cannot be
made equal: the same milliseconds of handler time run on a different share of a vCPU on each cloud,
and each cloud keeps deleted data recoverable for its own time, priced as built.

Each finding is one plain sentence (the views colour them by `pipeline.summary`); the rules are here,
once, for every view and for every point of `compare --sweep`.
"""

from __future__ import annotations

import itertools

from pipeline.comparison import CloudColumn, Lineup

MIN_WINDOW_S = 1.0  # waits below this are delivery noise, not batching: never reported as slower than the spec


def findings(comparison: Lineup) -> list[str]:
    """One line per finding: the cheapest cloud and by how much, which cloud is not priced, slower designs,
    orders an unverified price decides, and what a cloud cannot express or carry."""
    lines = _cheapest(comparison)
    lines += _unverified_order(comparison)
    flagged, slower = _slower_than_the_spec(comparison)
    lines += slower
    lines += _slower_end_to_end(comparison, flagged)
    lines += _relisting(comparison)
    for column in comparison.columns:
        if column.problems:
            lines.append(f"{column.title} cannot run this spec, so it is not priced: " + "; ".join(column.reasons()))
        if column.cost_error:
            lines.append(f"{column.title} cost unknown: {column.cost_error}")
        if column.limits_error:
            lines.append(f"{column.title} limits unknown: {column.limits_error}")
        lines.extend(f"{column.title} limit exceeded: {problem}" for problem in comparison.limit_problems(column))
    return lines


def _priced(comparison: Lineup) -> list[CloudColumn]:
    return sorted((c for c in comparison.planned() if c.cost), key=lambda c: c.cost.total if c.cost else 0.0)


def _cheapest(comparison: Lineup) -> list[str]:
    priced = _priced(comparison)
    if not priced:
        return []
    best, workload = priced[0], comparison.workload_text()
    assert best.cost is not None
    missing = [f"{c.title} not priced ({'cannot run this spec' if c.problems else 'cost unknown'}, below)"
               for c in comparison.columns if c not in priced]
    if len(priced) > 1:
        others = ", ".join(f"{c.title} ${c.cost.total:,.2f} (+${c.cost.total - best.cost.total:,.2f}, "
                           f"{_percent(c.cost.total, best.cost.total)})" for c in priced[1:] if c.cost)
        tail = "; ".join([others, *missing])
        return [f"Cheapest for {workload}: {best.title} at ${best.cost.total:,.2f}/month; {tail}."]
    if len(comparison.columns) == 1:
        return [f"{best.title} costs ${best.cost.total:,.2f}/month for {workload}."]
    return [f"Only {best.title} could be priced: ${best.cost.total:,.2f}/month for {workload}; {'; '.join(missing)}."]


def _unverified_order(comparison: Lineup) -> list[str]:
    """Two neighbours in the order whose gap is smaller than what either bills at prices marked for verification:
    were that figure off by as much as itself, the order would flip."""
    priced, lines = _priced(comparison), []
    for cheaper, dearer in itertools.pairwise(priced):
        assert cheaper.cost is not None and dearer.cost is not None
        gap = dearer.cost.total - cheaper.cost.total
        unsure = max((cheaper, dearer), key=lambda c: c.verify_usd)
        if unsure.verify_usd > gap:
            lines.append(f"An unverified price decides the order: {cheaper.title} is ${gap:,.2f} cheaper than {dearer.title}, "
                         f"less than the ${unsure.verify_usd:,.2f} {unsure.title} bills at prices marked to verify (--detail lists them).")
    return lines


def slower_than_the_spec(comparison: Lineup) -> set[str]:
    """Clouds whose design typically delivers slower than the spec's batching window (see `_slower_than_the_spec`)."""
    return _slower_than_the_spec(comparison)[0]


def _slower_than_the_spec(comparison: Lineup) -> tuple[set[str], list[str]]:
    """Stream stages whose trigger, on a cloud's design, typically holds records longer than the spec's batching
    window: that cloud is priced for slower delivery than the spec asks, and an equally fast design is not priced."""
    flagged: set[str] = set()
    lines = []
    for column in comparison.planned():
        for stage in comparison.spec.stages:
            if stage.trigger.stream is None or stage.name not in column.stages:
                continue
            window = stage.trigger.stream.max_batching_window_s
            sized = column.stages[stage.name]
            if sized["latency_s"] > max(window, MIN_WINDOW_S):
                flagged.add(column.cloud)
                lines.append(f"{column.title} is priced for slower delivery: {stage.name} waits ~{_seconds(sized['latency_s'])} "
                             f"(up to {_seconds(sized['latency_max_s'])}) for a batch at this load; the spec asks ≤{window} s "
                             f"(max_batching_window_s). A design as fast is not priced.")
    return flagged, lines


def _slower_end_to_end(comparison: Lineup, flagged: set[str]) -> list[str]:
    """A path that takes markedly longer on one cloud than on the fastest (twice as long and 30 s more)."""
    lines = []
    ends = {latency.path[-1] for column in comparison.planned() for latency in column.latency_paths}
    for end in sorted(ends):
        paths = [(column, latency) for column in comparison.planned() for latency in column.latency_paths if latency.path[-1] == end]
        if len(paths) < 2:
            continue
        fastest = min(latency.typical_s for _, latency in paths)
        for column, latency in paths:
            if column.cloud not in flagged and latency.typical_s > max(2 * fastest, fastest + 30):
                lines.append(f"{column.title} is slower: ~{_seconds(latency.typical_s)} end to end "
                             f"({' -> '.join(latency.path)}) against ~{_seconds(fastest)} on the fastest cloud.")
    return lines


def _relisting(comparison: Lineup) -> list[str]:
    """A run over accumulated outputs lists its whole source prefix (object keys are named by their input, not by time,
    so no cloud can list only what is new). Run often over a long-kept source, that listing becomes the bill: said,
    with the two numbers that bring it down, when it is at least a tenth of some cloud's total."""
    lines = []
    for stage in comparison.spec.stages:
        source = stage.trigger.window_source
        if source is None:
            continue
        spent: dict[str, float] = {}
        for column in comparison.planned():
            if column.cost:
                spent[column.title] = sum(line.monthly_usd for line in column.cost.lines
                                          if line.role == f"{source}-bucket" and "list" in line.item.lower() and stage.name in line.item)
        heavy = [title for title, usd in spent.items() if usd >= 10 and any(
            c.title == title and c.cost and usd >= 0.1 * c.cost.total for c in comparison.planned())]
        if not heavy:
            continue
        runs = max((c.stages.get(stage.name, {}).get("invocations_per_month", 0.0) for c in comparison.planned()), default=0.0)
        knob = (f"workload.stages.{stage.name}.requests_per_second" if stage.trigger.http else "the schedule")
        kept = "storage.uploads_days" if source == comparison.spec.uploads_name else "storage.intermediate_days or final_days"
        costs = ", ".join(f"${usd:,.2f} on {title}" for title, usd in spent.items())
        lines.append(f"{stage.name} lists everything {source} keeps at each of its {runs:,.0f} runs a month ({costs}): keys are "
                     f"named by their input, not by time, so each run lists them all. Run it less often ({knob}) or keep "
                     f"{source}'s objects fewer days ({kept}).")
    return lines


def assumptions(comparison: Lineup) -> list[str]:
    """What the comparison cannot make equal, stated once for all clouds: the CPU behind each stage's
    milliseconds, and how long each cloud keeps deleted data (both as planned and priced)."""
    lines = []
    described = [c for c in comparison.planned() if c.compute]
    if described:
        per_stage = []
        for stage in comparison.spec.stages:
            shares = []
            for column in described:
                compute = column.compute.get(stage.name)
                if compute is not None:
                    memory = "" if compute.memory_mb == stage.memory_mb else f" ({compute.memory_mb:,} MB instance)"
                    shares.append(f"{column.title} {compute.vcpus:.2g} vCPU{memory}")
            per_stage.append(f"{stage.name} at {stage.memory_mb:,} MB: {', '.join(shares)}")
        lines.append("workload.stages times are taken as the same on every cloud, but they run on different vCPU shares "
                     "(a CPU-bound handler takes longer on less): " + "; ".join(per_stage))
    protected = [c for c in comparison.planned() if c.data_protection]
    if protected:
        lines.append("deleted or overwritten data stays recoverable for a different time on each cloud, priced as built: "
                     + "; ".join(f"{c.title}: {c.data_protection}" for c in protected))
    return lines


def _percent(value: float, base: float) -> str:
    """"70% more", "0.2% more" (a difference is never shown as 0%)."""
    if base <= 0:
        return "n/a"
    share = (value - base) / base * 100
    return f"{share:,.0f}% more" if share >= 1 else f"{share:.1f}% more" if share >= 0.1 else "<0.1% more"


def _seconds(value: float) -> str:
    """A latency as people say it: 850 ms, 12 s, 4.5 min, 3.2 h."""
    if value < 1:
        return f"{value * 1000:,.0f} ms"
    if value < 120:
        return f"{value:,.0f} s"
    if value < 7200:
        return f"{value / 60:,.1f} min"
    return f"{value / 3600:,.1f} h"

