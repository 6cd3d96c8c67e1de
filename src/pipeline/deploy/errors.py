"""Errors of the deploy lifecycle, each carrying the exit code the CLI should use."""

from __future__ import annotations

from pipeline.errors import PipelineError


class DeployError(PipelineError):
    """An operation that failed or could not start, with what to do next in the message (exit 1)."""

    exit_code = 1


class DeployUsageError(DeployError):
    """Options that cannot work together or a malformed URL: bad usage (exit 2)."""

    exit_code = 2
