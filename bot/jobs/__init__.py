"""Jobs: the record (`model`), its pure state machine (`machine`) and the Redis store (`store`)."""

from bot.jobs.machine import NoChange, TransitionError
from bot.jobs.model import Job, StageSummary

__all__ = ["Job", "NoChange", "StageSummary", "TransitionError"]
