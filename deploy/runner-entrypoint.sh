#!/bin/bash
# Entry point of the Ascend runner image. The vllm-ascend image puts CANN and ATB on the path only in
# root's ~/.bashrc, which a container started with an argv never reads; source the same files here so
# the `vllm serve` the worker starts finds them, then become `adapt-bot "$@"`.
set -eo pipefail
for env_script in \
  /usr/local/Ascend/ascend-toolkit/set_env.sh \
  /usr/local/Ascend/nnal/atb/set_env.sh; do
  if [[ -f $env_script ]]; then
    # shellcheck source=/dev/null
    source "$env_script"
  fi
done
exec /opt/adapt-bot/bin/adapt-bot "$@"
