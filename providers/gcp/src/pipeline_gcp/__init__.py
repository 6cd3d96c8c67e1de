"""GCP backend: Pub/Sub, Cloud Storage, Cloud Functions gen2, Eventarc and Cloud Scheduler through pulumi-gcp v10."""
