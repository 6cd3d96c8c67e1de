"""`pipeline package`'s table: one row per stage, fitting an 80-column terminal.

The packages of one cloud and stack all live in one folder next to the spec
(`.pipeline/build/<cloud>/<stack>/`), so the folder is said once, relative to the spec, under the
table, and each row names only its file; an absolute path would repeat the folder on every row
and wrap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePath

from rich.table import Table

from pipeline.packaging import Package


def shown_path(path: Path, base: Path) -> PurePath:
    """`path` relative to the spec's folder `base` where it is inside it (packages always are)."""
    try:
        return path.relative_to(base)
    except ValueError:
        return path


def package_table(title: str, packages: Sequence[Package], base: Path, spec_name: str) -> Table:
    paths = [shown_path(p.path, base) for p in packages]
    folders = {path.parent for path in paths}
    one_folder = len(folders) == 1
    caption = f"in {next(iter(folders)).as_posix()}/ next to {spec_name}" if one_folder and paths else None
    table = Table(title=title, caption=caption, caption_justify="left")
    table.add_column("Stage", overflow="fold")
    table.add_column("Files", justify="right")
    table.add_column("Zipped", justify="right", no_wrap=True)
    table.add_column("Unpacked", justify="right", no_wrap=True)
    table.add_column("SHA-256", no_wrap=True)
    table.add_column("File" if one_folder else "Path", overflow="fold")
    for package, path in zip(packages, paths, strict=True):
        table.add_row(package.stage, f"{package.files:,}", f"{package.size / 1e6:,.2f} MB", f"{package.unpacked / 1e6:,.2f} MB",
                      package.sha256[:12], path.name if one_folder else path.as_posix())
    return table
