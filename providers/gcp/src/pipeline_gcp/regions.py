"""Google Cloud regions Cloud Run functions (gen2) can run in, for validating `clouds.gcp.region`.

Source: https://cloud.google.com/functions/docs/locations and https://cloud.google.com/run/docs/locations
(read 2026-11; a region Google adds later is refused until it is listed here, with a clear message).
"""

from __future__ import annotations

KNOWN_REGIONS = frozenset({
    "africa-south1", "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast2", "asia-northeast3", "asia-south1", "asia-south2",
    "asia-southeast1", "asia-southeast2", "australia-southeast1", "australia-southeast2", "europe-central2", "europe-north1",
    "europe-north2", "europe-southwest1", "europe-west1", "europe-west10", "europe-west12", "europe-west2", "europe-west3",
    "europe-west4", "europe-west6", "europe-west8", "europe-west9", "me-central1", "me-central2", "me-west1", "northamerica-northeast1",
    "northamerica-northeast2", "northamerica-south1", "southamerica-east1", "southamerica-west1", "us-central1", "us-east1", "us-east4",
    "us-east5", "us-south1", "us-west1", "us-west2", "us-west3", "us-west4",
})

# Regions Cloud Scheduler runs jobs in (https://cloud.google.com/scheduler/docs/locations and its release notes, read
# 2026-11: the App Engine-era regions, then europe-west4, me-central1, me-central2, me-west1 (2026-04),
# asia-southeast3 (2026-09-18), asia-south2, europe-west12, northamerica-northeast2 (2026-09-24)). A job only calls an
# HTTPS URL, so where the functions' region has no Cloud Scheduler, its job runs in the nearest listed one (FALLBACK).
SCHEDULER_REGIONS = frozenset({
    "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast2", "asia-northeast3", "asia-south1", "asia-south2", "asia-southeast1",
    "asia-southeast2", "asia-southeast3", "australia-southeast1", "europe-central2", "europe-west1", "europe-west12", "europe-west2",
    "europe-west3", "europe-west4", "europe-west6", "me-central1", "me-central2", "me-west1", "northamerica-northeast1",
    "northamerica-northeast2", "southamerica-east1", "us-central1", "us-east1", "us-east4", "us-west1", "us-west2", "us-west3", "us-west4",
})
SCHEDULER_FALLBACK = {
    "africa-south1": "europe-west1", "australia-southeast2": "australia-southeast1", "europe-north1": "europe-central2",
    "europe-north2": "europe-central2", "europe-southwest1": "europe-west1", "europe-west10": "europe-west3", "europe-west8": "europe-west12",
    "europe-west9": "europe-west1", "northamerica-south1": "us-central1", "southamerica-west1": "southamerica-east1", "us-east5": "us-east4",
    "us-south1": "us-central1",
}


def scheduler_region(region: str) -> str:
    """Where a stage's Cloud Scheduler job runs: the functions' region when Cloud Scheduler is there, else the nearest."""
    if region in SCHEDULER_REGIONS:
        return region
    return SCHEDULER_FALLBACK.get(region, "us-central1")
