"""The Redis keys of the runner channel, declared once for both sides (pure).

A runner pool's ACL user (`runner-<pool>`) may use exactly these:

- `adapt:pool:<pool>:*` read/write: its Celery queue (kombu's `global_keyprefix`), the per-attempt
  claim + heartbeat keys and the redelivery counters;
- `adapt:cancel:<pool>:<job>` read only: the cancel flag the control plane sets;
- `adapt:inbox:<pool>` XADD only: the stream of runner events the control plane consumes.

Everything else (job records, intents, the outbox, caches, other pools) is the control plane's.
`bot.redis_acl` renders these patterns into the ACL rules an operator installs.
"""

from __future__ import annotations

import re

from runners.contracts import POOL_PATTERN

_POOL = re.compile(POOL_PATTERN)


def check_pool(pool: str) -> str:
    if not _POOL.match(pool):
        raise ValueError(f"runner pool {pool!r} is not a valid name (lowercase letters, digits and '-')")
    return pool


def pool_prefix(pool: str) -> str:
    """kombu's `global_keyprefix` for the pool's queue, and the pool's private key space."""
    return f"adapt:pool:{check_pool(pool)}:"


def inbox(pool: str) -> str:
    return f"adapt:inbox:{check_pool(pool)}"


def cancel_flag(pool: str, job_id: str) -> str:
    return f"adapt:cancel:{check_pool(pool)}:{job_id}"


def claim(pool: str, job_id: str, stage: str, attempt: int) -> str:
    """Held (SET NX, with a TTL the heartbeat refreshes) by the runner running this attempt."""
    return f"{pool_prefix(pool)}run:{job_id}:{stage}:{attempt}"


def deliveries(pool: str, job_id: str, stage: str, attempt: int) -> str:
    """How many times a runner received this attempt's message (caps redelivery loops)."""
    return f"{pool_prefix(pool)}deliveries:{job_id}:{stage}:{attempt}"


def acl_rule(pool: str) -> str:
    """The ACL rule of the pool's runner user, without the `user <name> on >password` head.

    Commands that list or count keys (KEYS, SCAN, RANDOMKEY, INFO, ...) are refused: key names
    carry repository names. No pub/sub: runner workers run without remote control and events.
    """
    prefix = pool_prefix(pool)
    return " ".join(
        [
            "resetkeys",
            "resetchannels",
            "-@all",
            "+@connection",
            "-client",
            "+client|setname",
            "+client|getname",
            "+client|id",
            "+@read",
            "+@write",
            "+@list",
            "+@hash",
            "+@string",
            "+@set",
            "+@sortedset",
            "+@keyspace",
            "+@transaction",
            "+@scripting",
            "-@dangerous",
            "-@admin",
            "-@pubsub",
            "-keys",
            "-scan",
            "-randomkey",
            "-dbsize",
            "-object",
            "-memory",
            "-script|flush",
            "-function",
            "-fcall",
            "-fcall_ro",
            f"~{prefix}*",
            f"%R~{cancel_flag(pool, '*')}",
            f"(~{inbox(pool)} +xadd)",
        ]
    )
