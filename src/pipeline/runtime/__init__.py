"""The cloud-neutral function runtime: what runs a user's handler inside Lambda, Cloud Functions,
Azure Functions and `pipeline run`.

Standard library only (the local runner in `local.py` is the one exception and is never packaged
into a function), and nothing is imported here, so `import pipeline_aws.runtime` stays fast.
"""

LOCAL_ONLY = ("local", "report")  # modules of `pipeline run` on a laptop: never packaged into a function
