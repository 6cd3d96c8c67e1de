"""Shell completion: the values people type most (`--cloud`, `--stack`, stage names, templates), and
`--show-completion SHELL` / `--install-completion SHELL` for the shell named, not the one detected.

Completion runs on every Tab press, so each function here is cheap and quiet: it reads at most the
spec (through the bounded, strict YAML reader) and a folder listing, imports neither pydantic nor
Pulumi, and answers nothing rather than failing when the spec is missing or broken.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")
PROG = "pipeline"
COMPLETE_VAR = "_PIPELINE_COMPLETE"


def _spec(ctx: Any) -> Path:
    """The spec the command line names so far, else pipeline.yaml here. While an option's value is completed,
    click has not yet bound the positional SPEC (it is still in `ctx.args`), so a YAML file there comes first."""
    for arg in getattr(ctx, "args", None) or ():
        if isinstance(arg, str) and arg.endswith((".yaml", ".yml")):
            return Path(arg)
    value = (getattr(ctx, "params", None) or {}).get("spec")
    return Path(value) if value else Path("pipeline.yaml")


def clouds(incomplete: str) -> list[str]:
    """Installed backends; after a comma, the rest of a list (`aws,g` -> `aws,gcp`)."""
    from pipeline.backend import backend_names

    head, _, last = incomplete.rpartition(",")
    taken = set(head.split(",")) if head else set()
    prefix = f"{head}," if head else ""
    return [prefix + name for name in backend_names() if name.startswith(last) and name not in taken]


def stacks(ctx: Any, incomplete: str) -> list[str]:
    """The overlays next to the spec: stacks/NAME.yaml."""
    folder = _spec(ctx).parent / "stacks"
    try:
        names = sorted(p.stem for p in folder.glob("*.yaml") if p.is_file())
    except OSError:
        return []
    return [name for name in names if name.startswith(incomplete)]


def stages(ctx: Any, incomplete: str) -> list[str]:
    """The stage names the spec lists (read, not validated: a spec being edited still completes)."""
    from pipeline.spec.paths import read_regular_file
    from pipeline.spec.safe_yaml import MAX_BYTES, load_yaml

    path = _spec(ctx)
    try:
        data = load_yaml(read_regular_file(path, MAX_BYTES), str(path)).data
    except Exception:  # a missing, unreadable or broken spec: nothing to offer, never a traceback under the cursor
        return []
    listed = data.get("stages") if isinstance(data, dict) else None
    names = [item["name"] for item in listed or [] if isinstance(item, dict) and isinstance(item.get("name"), str)]
    return [name for name in names if name.startswith(incomplete)]


def templates(incomplete: str) -> list[str]:
    from pipeline.init import templates as bundled

    return [name for name in bundled() if name.startswith(incomplete)]


def requested_script(args: list[str]) -> tuple[str, str] | None:
    """("show"|"install", shell) when the command line is `--show-completion [SHELL]` or `--install-completion [SHELL]`
    (also `--show-completion=SHELL`); the shell is "" when none is named. None for any other command line."""
    if not args:
        return None
    option, _, shell = args[0].partition("=")
    actions = {"--show-completion": "show", "--install-completion": "install"}
    if option not in actions or len(args) > (1 if shell else 2):
        return None
    return actions[option], shell or (args[1] if len(args) == 2 else "")


def completion_script(action: str, shell: str) -> tuple[int, str]:
    """Show or install the completion script for `shell` (detected when empty): (exit code, text for stdout or stderr).

    Why not Typer's own option: with shellingham installed it is a flag, so `--show-completion zsh`
    printed the script of the shell it ran in (bash) and took `zsh` for a command."""
    from typer import _completion_shared as shared

    if not shell:
        shell = shared._get_shell_name() or ""
        if not shell:
            return 2, f"error: cannot tell which shell this is; name it: pipeline --{action}-completion {'|'.join(SHELLS)}"
    shell = shell.lower()
    if shell not in SHELLS:
        return 2, f"error: no completion for {shell!r}; shells: {', '.join(SHELLS)}"
    if action == "show":
        return 0, shared.get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell)
    name, path = shared.install(shell=shell, prog_name=PROG, complete_var=COMPLETE_VAR)
    return 0, f"{name} completion installed in {path}; it takes effect in a new terminal"
