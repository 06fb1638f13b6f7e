#!/usr/bin/env bash
# A serving host's start-up step: fetch the prebuilt artifact, never compile.
#
#   RMBUILD_REMOTE=s3://team-cache/rmbuild bash examples/ci/serve.sh tiny-llama-cpu
#
# Credentials come from the host's usual places (instance role, AWS_PROFILE, env); the pull
# checks every object's digest before it enters the local store, so a damaged remote copy is
# refused (exit 10, remote-corrupt) instead of served.
set -euo pipefail
ALIAS="${1:-tiny-llama-cpu}"
: "${RMBUILD_REMOTE:?set RMBUILD_REMOTE (or remote = \"...\" in ~/.config/rmbuild/config.toml)}"

rmbuild pull "$ALIAS"                 # by alias, id, id prefix or model:target
rmbuild verify "$ALIAS"               # optional: re-hash what was pulled
# A vendor's own server instead (furiosa-llm serve, vllm serve) takes a folder of the files:
#   rmbuild checkout "$ALIAS" /srv/model && exec furiosa-llm serve /srv/model
exec rmbuild run --artifact "$ALIAS" --prompt "${PROMPT:-Hello}" --max-tokens "${MAX_TOKENS:-32}"
