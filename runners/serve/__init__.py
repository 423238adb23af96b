"""The serve lifecycle: start `vllm serve` as a maintainer would, know when it is READY, always stop it.

API (used by the gates, feature probes, capacity and accuracy stages):

    from runners.serve import served, chat_completion, ServeError

    with served(ctx, load_format="dummy", extra_args=["--enforce-eager"], log_name="dummy-gate") as srv:
        srv.base_url        # "http://127.0.0.1:PORT"
        srv.served_name     # the --served-model-name
        srv.log_path        # Path of the bounded serve log (workspace logs/<log_name>.log)
        srv.argv            # the exact argv list that was started (no shell anywhere)
        srv.ready_after_s   # seconds from start to READY
        reply = chat_completion(srv, "say hi", max_tokens=16)   # ChatReply: ok, status, content, ...

`served()` raises `ServeError` (reason "timeout" | "crashed" | "cancelled" | "port-busy" |
"lease-timeout" | a signature reason such as "not-registered") carrying a diagnosis, the next step
and log evidence with line numbers, when the server never becomes ready. On exit (normal or not)
the whole process group is terminated (SIGTERM, SIGKILL after the grace period) and checked empty.

One module per job, each importing only the ones below it (checked by lint-imports):

    client      OpenAI-style requests to a READY server (chat, text, logprobs, streaming)
    lifecycle   `served()`: lease, plan, start, wait, yield, always tear down; RunningServer
    readiness   READY = alive AND /v1/models lists the served name; failure evidence
    process     the process group: start, members, kill, stale-server reaping, ports
    plan        argv, clean environment, working directory (pure)
    logsink     the size-bounded log with `grep -n` line numbers
    errors      ServeError
"""

from runners.serve.client import (
    TINY_PNG_DATA_URL,
    ChatReply,
    LogprobsReply,
    StreamStats,
    chat_completion,
    chat_payload,
    completion_logprobs,
    error_message,
    server_error_evidence,
    stream_completion,
    text_completion,
)
from runners.serve.errors import ServeError
from runners.serve.lifecycle import RunningServer, per_job_devices, served
from runners.serve.logsink import READY_LINE_PATTERNS, LogSink, read_log_lines
from runners.serve.plan import (
    SERVE_TAG_VAR,
    ServePlan,
    build_argv,
    build_env,
    is_credential_name,
    template_values,
    with_extra_args,
)
from runners.serve.process import (
    PGID_FILE,
    group_members,
    kill_group,
    pick_port,
    port_is_free,
    reap_stale_servers,
    start_process,
)
from runners.serve.readiness import models_listing, wait_ready

__all__ = [
    "PGID_FILE",
    "READY_LINE_PATTERNS",
    "SERVE_TAG_VAR",
    "TINY_PNG_DATA_URL",
    "ChatReply",
    "LogSink",
    "LogprobsReply",
    "RunningServer",
    "ServeError",
    "ServePlan",
    "StreamStats",
    "build_argv",
    "build_env",
    "chat_completion",
    "chat_payload",
    "completion_logprobs",
    "error_message",
    "group_members",
    "is_credential_name",
    "kill_group",
    "models_listing",
    "per_job_devices",
    "pick_port",
    "port_is_free",
    "read_log_lines",
    "reap_stale_servers",
    "served",
    "server_error_evidence",
    "start_process",
    "stream_completion",
    "template_values",
    "text_completion",
    "wait_ready",
    "with_extra_args",
]
