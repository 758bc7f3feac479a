#!/usr/bin/env bash
# Submit the preprocessing job to a Ray cluster and follow its log until it ends.
#
#   RAY_ADDRESS=http://HEAD:8265 jobs/submit_preprocess.sh \
#       --input s3://bucket/videos/ --output s3://bucket/datasets/v1 \
#       --config jobs/preprocess/cpu.yaml run.pose_actors=8 run.pose_gpus=0.5
#
# Everything after the script name goes to `python -m preprocess`. RAY_ADDRESS is the head's
# dashboard (job server) address; SUBMIT_ARGS adds `ray job submit` options (e.g.
# "--no-wait --submission-id prep-v1"). The exit status is the job's. Guide: docs/cluster.md.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${RAY_ADDRESS:?set RAY_ADDRESS to the dashboard address of the cluster, e.g. http://head:8265}"
RAY_CLI=${RAY_CLI:-$( [ -x .venv/bin/ray ] && echo .venv/bin/ray || echo ray )}
# shellcheck disable=SC2086  # SUBMIT_ARGS is a list of options
exec "$RAY_CLI" job submit --address "$RAY_ADDRESS" --working-dir . \
  --runtime-env jobs/ray/runtime_env.yaml ${SUBMIT_ARGS:-} -- python -m preprocess "$@"
