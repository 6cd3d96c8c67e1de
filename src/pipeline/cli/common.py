"""What the commands share: their options, the clouds they were given, and how they load a spec and report a
library's errors; plus how they write a finished answer. Kept out of `pipeline.cli.app` so command modules
(`lifecycle`, `operations`, the compare commands) use them without importing the app that registers them."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipeline.cli import completion
from pipeline.cli.exiting import planning_begins
from pipeline.cli.output import EXIT_BAD_INPUT, EXIT_FAILED, fail, out, spec_failure, wrote

if TYPE_CHECKING:
    from pipeline import plan_cache
    from pipeline.spec.load import LoadedSpec

SpecArg = Annotated[Path, typer.Argument(help="The pipeline spec (YAML).", show_default=True, metavar="SPEC")]
StackOpt = Annotated[str | None, typer.Option("--stack", "-s", metavar="NAME", help="Merge stacks/NAME.yaml (next to the spec) over the spec.",
                                              autocompletion=completion.stacks)]
CloudOpt = Annotated[str, typer.Option("--cloud", "-c", metavar="CLOUD", help="Target cloud: aws, gcp or azure.", autocompletion=completion.clouds)]
CloudsOpt = Annotated[list[str] | None, typer.Option(
    "--cloud", "-c", metavar="CLOUD[,CLOUD]", help="Clouds to use: repeat the option or give a comma list (default: aws,gcp,azure).",
    autocompletion=completion.clouds)]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write to this file instead of the terminal.")]
DEFAULT_CLOUDS = ("aws", "gcp", "azure")
EXIT_CHANGES = 3  # `diff --exit-code`: changes present (terraform's -detailed-exitcode uses 2, which here means bad input)
StoreOpt = Annotated[Path | None, typer.Option("--store", metavar="DIR", help="Local object store (default: .pipeline/local/<name>/<stack>/ next to the spec).")]
FsyncOpt = Annotated[bool, typer.Option("--fsync/--no-fsync", help="fsync every object (survives power loss; kill -9 safety needs no fsync).")]
CacheOpt = Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse the answer for an unchanged spec; --no-cache (or PIPELINE_NO_CACHE=1) plans afresh.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Do not show handler logs and tracebacks on stderr (run.log keeps them).")]


def parse_clouds(values: Sequence[str] | None, default: Sequence[str] = DEFAULT_CLOUDS) -> list[str]:
    """`--cloud aws --cloud gcp` and `--cloud aws,gcp` mean the same; order kept, repeats dropped."""
    names = [name.strip().lower() for value in values or () for name in value.split(",") if name.strip()]
    return list(dict.fromkeys(names)) or list(default)


def one_cloud(value: str, command: str) -> str:
    names = parse_clouds([value], default=())
    if len(names) != 1:
        fail(EXIT_BAD_INPUT, f"error: {command} works on one cloud at a time (got {value!r}); run it once per cloud, or use `pipeline compare` for several")
    return names[0]


@contextmanager
def reported(what: str) -> Iterator[None]:
    """One mapping from library errors to messages and exit codes: a spec a cloud cannot express is
    a bad spec (2), an unknown cloud is bad usage (2); any other explained failure is a failed operation (1)."""
    from pipeline.errors import PipelineError, SpecError, UnknownBackendError

    try:
        yield
    except SpecError as exc:
        spec_failure(what, exc.problems)
    except UnknownBackendError as exc:
        fail(EXIT_BAD_INPUT, f"error: {exc}")
    except PipelineError as exc:
        fail(EXIT_FAILED, f"error: {exc}")


def load(spec: Path, stack: str | None, request: plan_cache.Request | None = None) -> LoadedSpec:
    """The spec, or exit 2 with its problems. With a plan-cache `request`, the spec and overlays are
    the very bytes its key covers, and the other inputs are fingerprinted for `plan_cache.store`."""
    from pipeline.errors import SpecError
    from pipeline.spec.load import load_spec

    try:
        loaded = load_spec(spec, stack, request.read) if request else load_spec(spec, stack)
    except SpecError as exc:
        count = len(exc.problems)
        spec_failure(f"the spec has {count} problem{'s' if count != 1 else ''}", exc.problems)
    if request:
        request.watch(loaded)
    planning_begins()
    return loaded


def restored(state: dict[str, Any]) -> Any:
    """A cached plan, or None when the entry (checksummed, so only ever hand-made) does not make one."""
    from pipeline.plan import Plan

    try:
        return Plan.restore(state)
    except (TypeError, KeyError, ValueError, AttributeError):
        return None


@contextmanager
def console_for(output: Path | None, width: int) -> Iterator[Any]:
    """The terminal, or a file written with a fixed width and no colour."""
    from rich.console import Console

    if output is None:
        yield out
        return
    with output.open("w", encoding="utf-8") as handle:
        yield Console(file=handle, width=width, no_color=True, force_terminal=False)
    wrote(output)


def write_or_print(text: str, output: Path | None) -> None:
    """The finished answer, written whole: Ctrl-C is ignored while it is written (the work is done; an
    interrupt now would only leave half a JSON document for the reader, followed by the error object)."""
    import signal

    text = text if text.endswith("\n") else text + "\n"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if output:
            output.write_text(text, encoding="utf-8")
            wrote(output)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    finally:
        signal.signal(signal.SIGINT, previous)
