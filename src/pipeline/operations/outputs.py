"""The deployed stack's outputs, which name everything day-two commands read: buckets, functions, dead letters.

Two ways, named together whenever neither works: from the stack's Pulumi state (what `pipeline outputs`
reads: needs the Pulumi CLI, the state backend and the secrets passphrase), or from a file holding what
`pipeline outputs --json` printed (`--outputs FILE.json`), so CI jobs and people without the state can run
the commands. Outputs are checked to describe this spec before anything is read from the cloud.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.operations.protocol import OutputsError
from pipeline.spec.load import LoadedSpec

MAX_FILE_BYTES = 10 * 1024 * 1024


class OutputsFileError(OutputsError):
    """An --outputs file that cannot be read or is not outputs: bad usage (exit 2)."""

    exit_code = 2


def both_ways(loaded: LoadedSpec, cloud: str) -> str:
    spec = loaded.path.name
    stack = f" --stack {loaded.stack}" if loaded.stack != "default" else ""
    return (f"The outputs come from the stack's Pulumi state (what `pipeline outputs {spec} --cloud {cloud}{stack}` reads: the Pulumi "
            f"CLI, the state and its passphrase), or from a file: where the state is, save them once with `pipeline outputs {spec} "
            f"--cloud {cloud}{stack} --json > outputs.json`, then pass --outputs outputs.json")


def read_outputs_file(path: Path) -> dict[str, Any]:
    """What `pipeline outputs --json` printed, from a file (or '-' for stdin is not offered: the commands read stdin for nothing)."""
    try:
        if not path.is_file():
            raise OutputsFileError(f"--outputs {path}: {'no such file' if not path.exists() else 'not a regular file'}; "
                                   "give the file `pipeline outputs --json` wrote")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise OutputsFileError(f"--outputs {path} is over {MAX_FILE_BYTES // 2**20} MiB: not what `pipeline outputs --json` prints")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise OutputsFileError(f"--outputs {path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise OutputsFileError(f"--outputs {path} is not UTF-8 text: give the JSON `pipeline outputs --json` prints") from None
    try:
        values = json.loads(text)
    except ValueError as exc:
        raise OutputsFileError(f"--outputs {path} is not JSON ({exc}); give what `pipeline outputs --json` prints") from None
    if not isinstance(values, dict):
        raise OutputsFileError(f"--outputs {path} holds a JSON {type(values).__name__}, not the object `pipeline outputs --json` prints")
    if "error" in values and "buckets" not in values:
        raise OutputsFileError(f"--outputs {path} holds an error, not outputs: {str(values['error'])[:200]}")
    return values


def stack_outputs(loaded: LoadedSpec, cloud: str, backend_url: str | None = None) -> dict[str, Any]:
    """The stack's outputs from its Pulumi state; OutputsError naming both ways when that cannot work here."""
    from pipeline.backend import backend_class
    from pipeline.deploy import naming, preflight
    from pipeline.deploy.engine import Engine, Target, open_stack
    from pipeline.deploy.errors import DeployError

    try:
        backend = backend_class(cloud)(loaded.spec, loaded.stack, loaded.base_dir)
        url = naming.resolve_backend_url(loaded, backend_url)
        cli, problems = preflight.environment_problems(backend, url, None, credentials=False, passphrase=True, interactive=False)
        if cli is None or problems:
            listed = "".join(f"\n  - {problem.render()}" for problem in problems) or "\n  - no Pulumi CLI"
            raise OutputsError(f"cannot read the stack's outputs from its Pulumi state here:{listed}\n{both_ways(loaded, cloud)}")
        target = Target(loaded, cloud, url, None, cli)
        values = Engine(target, open_stack(target, create=False)).outputs()
    except DeployError as exc:
        raise OutputsError(f"cannot read the stack's outputs from its Pulumi state: {str(exc).splitlines()[0]}\n{both_ways(loaded, cloud)}") from None
    if not values:
        raise OutputsError(f"stack {naming.stack_name(loaded, cloud)} has no outputs: it has not been deployed, or it was destroyed")
    return values


def check_outputs(outputs: Mapping[str, Any], loaded: LoadedSpec, cloud: str, where: str, from_file: bool) -> None:
    """Outputs that name this spec's dead-letter bucket and every stage (else they are another stack's): a file that
    does not is bad usage (exit 2), a stack's own state that does not, a failed check (exit 1)."""
    error = OutputsFileError if from_file else OutputsError
    buckets = outputs.get("buckets")
    functions = outputs.get("functions")
    if not isinstance(buckets, Mapping) or "dead-letter" not in buckets:
        raise error(f"{where} name no dead-letter bucket (under \"buckets\"); they are not what `pipeline outputs --cloud {cloud} --json` "
                               "prints for a deployed pipeline")
    missing = [stage.name for stage in loaded.spec.stages if not isinstance(functions, Mapping) or stage.name not in functions]
    if missing:
        raise error(f"{where} name no function for stage(s) {', '.join(missing)} of {loaded.path.name}: they belong to "
                               "another pipeline or an older deploy; deploy this spec, or save the outputs of this stack again")
