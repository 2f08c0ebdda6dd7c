"""The plan: a traced model as a list of steps (the IR every executor runs), with the change-map
and tile helpers the policies build masks from."""

from passrt.plan.trace import Plan, build_plan, trace

__all__ = ["Plan", "build_plan", "trace"]
