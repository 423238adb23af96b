"""Jobs: the record (`model`), its pure state machine (`machine`) and the Redis store (`store`)."""

from bot.jobs.machine import ORDER, NoChange, TransitionError
from bot.jobs.model import Job, StageSummary

__all__ = ["ORDER", "Job", "NoChange", "StageSummary", "TransitionError"]
