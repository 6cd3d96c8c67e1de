"""Deploy lifecycle: preview, deploy, outputs, refresh, destroy and cancel through the Pulumi
Automation API, running the same `pipeline_program` the offline planner runs.

`naming` fixes project, stack, state and config names; `preflight` checks the machine before the
engine is touched; `engine` drives a stack and turns engine failures into actionable errors;
`progress` and `summary` turn engine events and results into what a user sees.
"""
