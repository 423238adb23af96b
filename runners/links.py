"""The public URLs of a job's pages, built in one place for everything the bot posts (status
comment, PR body, check runs, final and failure reports) and matched by the routes of
bot/api/pages.py: `/jobs/<id>` (anchors `#verdict`, `#stages`, `#evidence`, `#logs`, `#report`,
`#runbook`) and `/jobs/<id>/logs/<stage>/<file>#L<line>`. Pure; runners' artifacts may use it."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

#: The log file names a runner ships (runners.host.logs.LOG_NAME; not imported: artifacts, which
#: stages import, must not reach the runner host; tests/pages asserts the two are the same).
LOG_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}\.(log|jsonl)$")


#: The workflow the bot automates (vllm-ascend #6731); the skill asks that the originating issue
#: gets a link to it, which the final comment carries (one final comment per job, edited in place).
SKILL_URL = (
    "https://github.com/vllm-project/vllm-ascend/blob/main/.agents/skills/vllm-ascend-model-adapter/SKILL.md"
)


def job_url(public_url: str | None, job_id: str) -> str | None:
    """`<public>/jobs/<id>`, or None when no public URL is configured (then nothing is linked)."""
    return f"{public_url.rstrip('/')}/jobs/{job_id}" if public_url else None


def log_url(job_page: str | None, stage: str, log_path: str | None, line: int | None = None) -> str | None:
    """The page of the log a runner path names, as the runner ships it (`<stage>/<file name>`), at
    a line when given; None without a job page or for a file the runner does not ship as a log."""
    if not job_page or not log_path:
        return None
    name = PurePosixPath(log_path).name
    if not LOG_NAME.match(name):
        return None
    return f"{job_page}/logs/{stage}/{name}" + (f"#L{line}" if line else "")
