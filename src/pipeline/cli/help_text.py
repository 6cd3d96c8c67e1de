"""`--help` that reads well: an example for every command and plain metavars (`NAME`, not `<str>`).

Applied once to the click command tree in `main`, so commands defined anywhere (lifecycle, run)
get the same treatment without repeating it in each decorator.
"""

from __future__ import annotations

from typing import Any

SPEC = "stacks/transactions/pipeline.yaml"

EXAMPLES: dict[str, list[str]] = {
    "init": ["pipeline init my-pipeline", "pipeline init --list"],
    "validate": [f"pipeline validate {SPEC} --stack prod --cloud aws,gcp   # also checks each stage carries the workload",
                 "pipeline validate --format json"],
    "plan": [f"pipeline plan {SPEC} --stack dev --cloud gcp", f"pipeline plan {SPEC} --cloud aws --format json -o plan.json"],
    "compare": [f"pipeline compare {SPEC} --stack dev", f"pipeline compare {SPEC} --cloud aws,azure --detail",
                f"pipeline compare {SPEC} --stack dev --format html -o report.html",
                f"pipeline compare {SPEC} --no-cache --jobs 3   # plan afresh, the clouds side by side on 3 cores",
                f"pipeline compare {SPEC} --stack dev --sweep records_per_second=10..20000   # where the cheapest cloud changes",
                f"pipeline compare {SPEC} --sweep record_bytes=200,700,5000 --format json"],
    "diff": [f"pipeline diff {SPEC} --stack prod --against-stack dev", "pipeline diff new.yaml --against old.yaml --format markdown",
             "pipeline compare --format json -o base.json   # on the main branch, then on the change:",
             "pipeline diff --against base.json --fail-above 10%",
             "pipeline diff --against base.json --exit-code   # CI: 0 nothing changed, 3 changes present, 1 failed, 2 bad input"],
    "diagram": [f"pipeline diagram {SPEC} --cloud azure -o azure.svg", f"pipeline diagram {SPEC} --cloud aws --view identity -o iam.png"],
    "run": [f"pipeline run {SPEC} --stack dev --input stacks/transactions/data/transactions.jsonl", "cat events.jsonl | pipeline run --input -",
            "pipeline run stacks/upload-processing/pipeline.yaml --upload day1.jsonl.gz --upload day2.jsonl"],
    "serve": ["pipeline serve stacks/stream-scoring/pipeline.yaml --port 8080",
              "curl -X POST --data-binary @readings.jsonl http://127.0.0.1:8080/stream",
              "curl -X POST --data-binary @readings.jsonl http://127.0.0.1:8080/stages/score-api   # JSON lines or a JSON array",
              "curl -T day1.jsonl.gz http://127.0.0.1:8080/uploads/day1.jsonl.gz   # a pipeline with uploads"],
    "invoke": ["pipeline invoke preprocess stacks/stream-scoring/pipeline.yaml --input stacks/stream-scoring/data/readings.jsonl",
               "head -3 readings.jsonl | pipeline invoke score-api stacks/stream-scoring/pipeline.yaml --input -",
               "pipeline invoke process stacks/upload-processing/pipeline.yaml --input day1.jsonl.gz --format json"],
    "package": [f"pipeline package {SPEC} --cloud azure", f"pipeline package {SPEC} --cloud gcp --no-deps --format json"],
    "export": [f"pipeline export {SPEC} --cloud aws --stack dev -o exported-aws"],
    "schema": ["pipeline schema > pipeline.schema.json"],
    "server": ["pipeline server start --idle-minutes 60", f"pipeline compare {SPEC}   # now answered by the warm server",
               "pipeline server status", "pipeline server stop"],
    "backends": ["pipeline backends"],
    "preview": [f"pipeline preview {SPEC} --cloud aws --stack dev"],
    "deploy": [f"pipeline deploy {SPEC} --cloud aws --stack dev", f"pipeline deploy {SPEC} --cloud gcp --stack prod --yes --json   # CI: every preflight problem listed"],
    "outputs": [f"pipeline outputs {SPEC} --cloud aws --stack dev --json"],
    "refresh": [f"pipeline refresh {SPEC} --cloud aws --stack dev"],
    "destroy": [f"pipeline destroy {SPEC} --cloud aws --stack dev"],
    "cancel": [f"pipeline cancel {SPEC} --cloud aws --stack dev --yes"],
}


def _choices(param: Any) -> list[str]:
    """A parameter's choices, with Typer's own parameter classes (Typer >= 0.2x) or click's."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        return [str(getattr(c, "value", c)) for c in (descriptor.choices or ())] if descriptor.is_choice else []
    return [str(getattr(c, "value", c)) for c in getattr(getattr(param, "type", None), "choices", ())]


def _metavar(param: Any) -> str | None:
    """A readable placeholder: choices spelled out, otherwise the parameter's name in capitals."""
    choices = _choices(param)
    if choices:
        return "|".join(choices)
    return param.name.upper().replace("_", "-") if param.name else None


def polish(group: Any) -> None:
    """Examples as epilogs (`\b` keeps the formatter from re-wrapping them) and a metavar for every
    value option that has none (`NAME`, `table|json`, never `<str>`)."""
    for name, command in group.commands.items():
        examples = EXAMPLES.get(name)
        if examples and not command.epilog:
            command.epilog = "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in examples)
        for param in command.params:
            if param.param_type_name == "option" and (getattr(param, "is_flag", False) or getattr(param, "count", False)):
                continue
            if param.param_type_name == "argument":
                param.metavar = param.metavar or _metavar(param)
                if hasattr(param, "display_type_rich"):  # Typer appends "<path>" to an argument's name otherwise
                    param.display_type_rich = lambda ctx: None
            elif param.metavar is None or param.metavar.startswith("<"):
                param.metavar = _metavar(param)
