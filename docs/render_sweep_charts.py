"""Render the README's cost-vs-load charts: `compare --sweep` of each bundled stack, drawn by headless Chromium.

    .venv/bin/python docs/render_sweep_charts.py        # needs chromium (Debian: /usr/bin/chromium)

Writes docs/sweep-<stack>.png: the very SVG the HTML report embeds (pipeline.sweep_chart), alone on a page
at its natural size, plus the crossovers in words on stdout for the README.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = {  # stack -> (overlay, sweep)
    "transactions": ("dev", "records_per_second=10..20000"),
    "stream-scoring": ("dev", "records_per_second=1..20000"),
    "upload-processing": ("prod", "uploads.files_per_hour=1..100000"),
}


def main() -> None:
    from pipeline.sweep_chart import HEIGHT, WIDTH, chart_svg

    exe = shutil.which("pipeline", path=str(Path(sys.executable).parent)) or "pipeline"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is needed to render the charts")
    with tempfile.TemporaryDirectory() as tmp:
        for stack, (overlay, sweep) in SWEEPS.items():
            spec = ROOT / "stacks" / stack / "pipeline.yaml"
            out = subprocess.run([exe, "compare", str(spec), "--stack", overlay, "--sweep", sweep, "--points", "20", "--format", "json"],
                                 check=True, capture_output=True, text=True).stdout
            data = json.loads(out)
            page = Path(tmp) / f"{stack}.html"
            page.write_text(f"<!DOCTYPE html><html><body style='margin:0;background:#fff'>{chart_svg(data)}</body></html>", encoding="utf-8")
            target = ROOT / "docs" / f"sweep-{stack}.png"
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                            f"--user-data-dir={Path(tmp) / 'profile'}", f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={target}",
                            page.as_uri()], check=True, capture_output=True)
            print(f"{target.relative_to(ROOT)}: {stack} ({overlay}) --sweep {sweep}")
            for crossover in data["crossovers"]:
                print(f"  {crossover['text']}")


if __name__ == "__main__":
    main()
