"""Hostile inputs for the spec loader's fuzz tests: mutations of a valid spec that escape the
project folder, point at devices and FIFOs, or smuggle control characters and Unicode look-alikes
into names; plus the project-side traps (symlinks out, a FIFO, device links) they point at.

Every mutation is deterministic (seeded) so a failure names a reproducible input.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# The traps `prepare_project` builds inside the project folder; paths relative to it.
PATH_TRAPS = [
    "../outside/secret.py",  # '..' escape to a real file
    "handlers/../../outside/secret.py",
    "../../../../../../etc/passwd",
    "handlers/../handlers/score.py",  # '..' that stays inside: still refused
    "/etc/passwd",  # absolute
    "/dev/zero",
    "/dev/urandom",
    "links/passwd.py",  # symlink to a system file
    "links/zero.py",  # symlink to /dev/zero
    "links/outside/secret.py",  # through a symlinked folder that leads out
    "links/fifo.py",  # a FIFO inside the project
    "links/loop.py",  # a symlink loop
    "links",  # a folder
    "leaky/h.py",  # fine itself, but its folder holds a symlink out (the folder is shipped)
    "handlers\\score.py",  # a Windows separator
    "handlers/score.py\n",  # trailing newline
    "handlers/sc\x00ore.py",  # NUL
    "handlers/sc\u043ere.py",  # Cyrillic 'о'
    "",
    "x" * 5000,
]

# Spec files and overlays that are not regular files (the spec argument / --stack NAME).
SPEC_TRAPS = ["links/zero.yaml", "links/urandom.yaml", "links/fifo.yaml", "links", "/dev/zero", "/dev/null"]
STACK_TRAPS = ["zero", "fifo", "urandom", "passwd", "dev\n", "d\u0435v"]

# Ways to spoil a name: control characters, a trailing newline, look-alikes, invisible characters.
NAME_SPOILERS: list[Callable[[str], str]] = [
    lambda s: s + "\n",
    lambda s: s + "\r\n",
    lambda s: "\n" + s,
    lambda s: s[:1] + "\x00" + s[1:],
    lambda s: s[:1] + "\x1b[31m" + s[1:],
    lambda s: s + "\x7f",
    lambda s: s + "\t",
    lambda s: s.replace("a", "\u0430").replace("e", "\u0435").replace("o", "\u043e") if re.search("[aeo]", s) else "\u0430" + s,
    lambda s: re.sub("[0-9]", lambda m: chr(0xFF10 + int(m.group(0))), s) if re.search("[0-9]", s) else s + "\uff11",
    lambda s: s[:1] + "\u200b" + s[1:],  # zero-width space
    lambda s: s + "\u00a0",  # no-break space
    lambda s: s[:1] + "\u202e" + s[1:],  # right-to-left override
    lambda s: s.upper(),
    lambda s: s * 3000,  # very long
    lambda s: s + "\u2028",  # line separator
]

# (slot, regex whose group 1 is the value to replace) over the example spec.
NAME_SLOTS = [
    ("pipeline name", r"^name: (\S+)$"),
    ("stage name", r"^  - name: (\S+)$"),
    ("from", r"from: (\w+)$"),
    ("schedule", r'schedule: ("[^"]*")'),
    ("tag key", r"^  (team|cost-center):"),
    ("tag value", r"^  team: (\S+)$"),
    ("env key", r"^      (CURRENCY):"),
    ("env value", r"^      CURRENCY: (\S+)$"),
    ("aws region", r"^    region: (us-east-1)$"),
    ("gcp region", r"^    region: (us-central1)$"),
    ("gcp project", r"^    project: (\S+)$"),
    ("azure location", r"^    location: (\S+)$"),
    ("duration key", r"^    (preprocess|score|calibrate): \d+$"),
]
PATH_SLOTS = [
    ("handler file", r"handler: (handlers/\w+\.py):\w+$"),
    ("model", r"model: (\S+)$"),
    ("requirements", r"requirements: (\S+)$"),
]


@dataclass(frozen=True)
class Mutation:
    kind: str  # "text", "path", "name", "spec-file", "overlay"
    text: str
    spec: str = "pipeline.yaml"  # relative to the project folder, or absolute
    stack: str | None = None

    def spec_path(self, folder: Path) -> Path:
        return Path(self.spec) if os.path.isabs(self.spec) else folder / self.spec


def prepare_project(folder: Path) -> None:
    """Build the traps PATH_TRAPS, SPEC_TRAPS and STACK_TRAPS point at, in and next to `folder`."""
    outside = folder.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.py").write_text("def score(records, context):\n    return []\n", encoding="utf-8")
    (outside / "secret.yaml").write_text("name: stolen\n", encoding="utf-8")
    links = folder / "links"
    links.mkdir()
    for name, target in [("passwd.py", "/etc/passwd"), ("zero.py", "/dev/zero"), ("zero.yaml", "/dev/zero"),
                         ("urandom.yaml", "/dev/urandom"), ("outside", str(outside)), ("loop.py", "loop.py")]:
        (links / name).symlink_to(target)
    os.mkfifo(links / "fifo.py")
    os.mkfifo(links / "fifo.yaml")
    leaky = folder / "leaky"
    leaky.mkdir()
    (leaky / "h.py").write_text("def score(records, context):\n    return []\n", encoding="utf-8")
    (leaky / "leak.txt").symlink_to("/etc/passwd")
    stacks = folder / "stacks"
    (stacks / "zero.yaml").symlink_to("/dev/zero")
    (stacks / "urandom.yaml").symlink_to("/dev/urandom")
    (stacks / "passwd.yaml").symlink_to("/etc/passwd")
    os.mkfifo(stacks / "fifo.yaml")


def _quoted(value: str) -> str:
    """A YAML double-quoted scalar (JSON's escapes are valid YAML) holding exactly `value`."""
    return json.dumps(value)


def _replace_slot(text: str, pattern: str, rng: random.Random, new: str | Callable[[str], str]) -> str | None:
    matches = list(re.finditer(pattern, text, re.MULTILINE))
    if not matches:
        return None
    match = rng.choice(matches)
    old = match.group(1)
    value = new(old.strip('"')) if callable(new) else new
    return text[: match.start(1)] + _quoted(value) + text[match.end(1):]


def path_mutation(text: str, rng: random.Random) -> Mutation:
    slot, pattern = rng.choice(PATH_SLOTS)
    trap = rng.choice(PATH_TRAPS)
    if slot == "handler file":
        # Replace the whole `file.py:function` value so the quoted scalar holds both parts.
        matches = list(re.finditer(r"handler: (handlers/\w+\.py:(\w+))$", text, re.MULTILINE))
        match = rng.choice(matches)
        function = match.group(2) if trap != "leaky/h.py" else "score"
        mutated = text[: match.start(1)] + _quoted(f"{trap}:{function}") + text[match.end(1):]
    else:
        mutated = _replace_slot(text, pattern, rng, trap) or text
    return Mutation("path", mutated)


def name_mutation(text: str, rng: random.Random) -> Mutation:
    slot, pattern = rng.choice([*NAME_SLOTS, ("handler function", "")])
    spoil = rng.choice(NAME_SPOILERS)
    if slot == "handler function":  # the whole `file.py:function` value is quoted, so spoil inside it
        pattern = r"handler: (handlers/\w+\.py:\w+)$"
        mutated = _replace_slot(text, pattern, rng, lambda value: value.split(":")[0] + ":" + spoil(value.split(":")[1]))
    else:
        mutated = _replace_slot(text, pattern, rng, spoil)
    return Mutation("name", mutated if mutated is not None else text)


def file_mutation(text: str, rng: random.Random) -> Mutation:
    if rng.random() < 0.5:
        return Mutation("spec-file", text, spec=rng.choice(SPEC_TRAPS))
    return Mutation("overlay", text, stack=rng.choice(STACK_TRAPS))
