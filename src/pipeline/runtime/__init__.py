"""The cloud-neutral function runtime: what runs a user's handler inside Lambda, Cloud Functions,
Azure Functions and `pipeline run`.

Standard library only (the local runner in `local.py` and its helpers are the exception and are
never packaged into a function), and nothing is imported here, so `import pipeline_aws.runtime` stays fast.
"""

# Modules of `pipeline run` on a laptop: never packaged into a function.
LOCAL_ONLY = ("local", "local_stages", "local_journal", "local_invoke", "serve", "report", "lines", "worker", "stage_process",
              "local_deps", "watch")
