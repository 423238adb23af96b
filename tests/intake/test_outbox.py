"""The intent outbox: nothing accepted is lost when publishing fails or a publisher dies."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import redis

from bot.api.outbox import CLAIMED, OUTBOX, WAKE, Outbox


class Recording:
    def __init__(self, fail_after: int | None = None) -> None:
        self.sent: list[str] = []
        self.fail_after = fail_after

    def run_stage(self, request: Any) -> None:
        raise AssertionError("not used")

    def control(self, task: str, *args: Any, countdown: float | None = None) -> None:
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise ConnectionError("broker away")
        assert task == "bot.tasks.apply_intent"
        self.sent.append(args[0])


def test_publish_failure_keeps_the_rest_and_an_expired_claim_is_sent_again(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    r.zadd(OUTBOX, {"i1": 1, "i2": 2, "i3": 3})
    flaky = Recording(fail_after=1)
    with contextlib.suppress(ConnectionError):
        Outbox(r, flaky, lease_s=0.3).publish_pending()
    assert flaky.sent == ["i1"]
    assert set(r.zrange(CLAIMED, 0, -1)) == {"i2", "i3"}  # claimed, not acknowledged
    good = Recording()
    assert Outbox(r, good, lease_s=0.3).publish_pending() == 0  # lease still running: not stolen
    time.sleep(0.4)
    assert Outbox(r, good, lease_s=0.3).publish_pending() == 2
    assert sorted(good.sent) == ["i2", "i3"]
    assert r.zcard(OUTBOX) == 0 and r.zcard(CLAIMED) == 0


def test_publisher_thread_wakes_on_accept(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    q = Recording()
    box = Outbox(r, q, poll_s=5)
    box.start()
    try:
        time.sleep(0.2)  # the publisher is blocked on the wake list now
        r.zadd(OUTBOX, {"x": 1})
        t0 = time.monotonic()
        r.lpush(WAKE, "1")  # what the accept script does
        while not q.sent and time.monotonic() - t0 < 5:
            time.sleep(0.005)
        assert q.sent == ["x"] and time.monotonic() - t0 < 1
    finally:
        box.stop()
    r.zadd(OUTBOX, {"late": 2})
    box.stop()  # stopping hands over what is left
    assert q.sent == ["x", "late"]
