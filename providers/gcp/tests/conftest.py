"""The shared emulator fixtures (tests/conftest_emulators.py) and helpers (tests/emulators.py) for the GCP runtime tests."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

from conftest_emulators import gcs_client, gcs_endpoint, stage_env  # noqa: F401  (fixtures, registered by import)
