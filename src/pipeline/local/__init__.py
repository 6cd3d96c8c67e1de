"""`pipeline run`, `serve` and `invoke` on this machine: the local runner, its journal, its worker processes and
the development server. None of it ships in a function package; the code that does is `pipeline.runtime`,
which every module here drives exactly as a cloud's entry module drives it.
"""
