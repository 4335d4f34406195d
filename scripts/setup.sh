#!/usr/bin/env bash
# One-time (and re-runnable) Google Cloud setup for imgpipe. Idempotent: every step creates
# what is missing and converges what exists.
#
#   PROJECT=my-proj REGION=us-central1 BUCKET=my-imgpipe UPLOAD_BUCKET=my-imgpipe-uploads \
#     bash scripts/setup.sh
#
# Creates: APIs, the Cloud Tasks queues `high` and `normal` (flags from
# imgpipe.queueconfig, the one source of truth), service accounts (runtime of the functions;
# the OIDC identity of tasks and of the scheduler), IAM bindings, the outputs bucket and the
# separate uploads bucket (a GCS trigger cannot filter by prefix), the Firestore database and
# the composite indexes of firestore.indexes.json, and the sweeper's Cloud Scheduler job
# (after deploy.sh, which it needs the sweeper's URL of; re-run setup.sh after deploying).
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=${PROJECT:?set PROJECT}
REGION=${REGION:-us-central1}
BUCKET=${BUCKET:-$PROJECT-imgpipe}
UPLOAD_BUCKET=${UPLOAD_BUCKET:-$PROJECT-imgpipe-uploads}
QUEUE_HIGH=${QUEUE_HIGH:-high}
QUEUE=${QUEUE:-normal}
MAX_ATTEMPTS=${IMGPIPE_MAX_ATTEMPTS:-5}
PUBLIC_RENDITIONS=${PUBLIC_RENDITIONS:-true}   # false: serve V4 signed URLs (IMGPIPE_URL_MODE=signed)
PYTHON=${PYTHON:-python3}
RUNTIME_SA=imgpipe-runtime@$PROJECT.iam.gserviceaccount.com
TASKS_SA=imgpipe-tasks@$PROJECT.iam.gserviceaccount.com
g() { gcloud --project="$PROJECT" --quiet "$@"; }
step() { printf '\n==> %s\n' "$*"; }

step "APIs"
g services enable cloudfunctions.googleapis.com run.googleapis.com cloudbuild.googleapis.com \
  cloudtasks.googleapis.com firestore.googleapis.com storage.googleapis.com \
  eventarc.googleapis.com pubsub.googleapis.com cloudscheduler.googleapis.com \
  artifactregistry.googleapis.com iamcredentials.googleapis.com logging.googleapis.com \
  secretmanager.googleapis.com

step "Service accounts"
for sa in imgpipe-runtime imgpipe-tasks; do
  g iam service-accounts describe "$sa@$PROJECT.iam.gserviceaccount.com" >/dev/null 2>&1 \
    || g iam service-accounts create "$sa" --display-name="imgpipe ${sa#imgpipe-}"
done

step "IAM bindings"
bind() { g projects add-iam-policy-binding "$PROJECT" --member="$1" --role="$2" \
  --condition=None >/dev/null; }
bind "serviceAccount:$RUNTIME_SA" roles/datastore.user
bind "serviceAccount:$RUNTIME_SA" roles/cloudtasks.enqueuer
bind "serviceAccount:$RUNTIME_SA" roles/cloudtasks.viewer
bind "serviceAccount:$RUNTIME_SA" roles/logging.logWriter
bind "serviceAccount:$RUNTIME_SA" roles/eventarc.eventReceiver
bind "serviceAccount:$TASKS_SA" roles/run.invoker
# The runtime creates tasks that carry the tasks account's OIDC token, and signs URLs as itself.
g iam service-accounts add-iam-policy-binding "$TASKS_SA" \
  --member="serviceAccount:$RUNTIME_SA" --role=roles/iam.serviceAccountUser >/dev/null
g iam service-accounts add-iam-policy-binding "$RUNTIME_SA" \
  --member="serviceAccount:$RUNTIME_SA" --role=roles/iam.serviceAccountTokenCreator >/dev/null
# GCS publishes the finalize events through Pub/Sub.
GCS_SA=$(g storage service-agent)
bind "serviceAccount:$GCS_SA" roles/pubsub.publisher

step "Buckets"
for b in "$BUCKET" "$UPLOAD_BUCKET"; do
  g storage buckets describe "gs://$b" >/dev/null 2>&1 \
    || g storage buckets create "gs://$b" --location="$REGION" --uniform-bucket-level-access
  g storage buckets add-iam-policy-binding "gs://$b" \
    --member="serviceAccount:$RUNTIME_SA" --role=roles/storage.objectAdmin >/dev/null
done
if [ "$PUBLIC_RENDITIONS" = true ]; then
  g storage buckets add-iam-policy-binding "gs://$BUCKET" --member=allUsers \
    --role=roles/storage.objectViewer >/dev/null
fi
# Uploads are working copies: browsers PUT to signed URLs; keep them a week.
cat > /tmp/imgpipe-cors.json <<JSON
[{"origin": ["*"], "method": ["PUT"], "responseHeader": ["Content-Type"], "maxAgeSeconds": 3600}]
JSON
cat > /tmp/imgpipe-lifecycle.json <<JSON
{"rule": [{"action": {"type": "Delete"}, "condition": {"age": 7}}]}
JSON
g storage buckets update "gs://$UPLOAD_BUCKET" --cors-file=/tmp/imgpipe-cors.json \
  --lifecycle-file=/tmp/imgpipe-lifecycle.json >/dev/null

step "API token (Secret Manager; deploy.sh mounts it as IMGPIPE_API_TOKEN)"
if ! g secrets describe imgpipe-api-token >/dev/null 2>&1; then
  "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32), end="")' \
    | g secrets create imgpipe-api-token --data-file=- --replication-policy=automatic
  echo "API token created: gcloud secrets versions access latest --secret=imgpipe-api-token"
fi
g secrets add-iam-policy-binding imgpipe-api-token --member="serviceAccount:$RUNTIME_SA" \
  --role=roles/secretmanager.secretAccessor >/dev/null

step "Cloud Tasks queues"
for q in "$QUEUE_HIGH" "$QUEUE"; do
  mapfile -t flags < <(PYTHONPATH=shared "$PYTHON" -m imgpipe.gcp.queueflags "$q" \
    --max-attempts "$MAX_ATTEMPTS")
  if g tasks queues describe "$q" --location="$REGION" >/dev/null 2>&1; then
    g tasks queues update "$q" --location="$REGION" "${flags[@]}" >/dev/null
  else
    g tasks queues create "$q" --location="$REGION" "${flags[@]}"
  fi
done

step "Firestore database and indexes"
g firestore databases describe --database='(default)' >/dev/null 2>&1 \
  || g firestore databases create --location="$REGION" --type=firestore-native
"$PYTHON" - "$PROJECT" <<'PY'
import json, subprocess, sys
project = sys.argv[1]
spec = json.load(open("firestore.indexes.json"))
for index in spec["indexes"]:
    args = ["gcloud", f"--project={project}", "--quiet", "firestore", "indexes", "composite",
            "create", f"--collection-group={index['collectionGroup']}",
            f"--query-scope={index['queryScope']}"]
    args += [f"--field-config=field-path={f['fieldPath']},order={f['order'].lower()}"
             for f in index["fields"]]
    done = subprocess.run(args + ["--async"], capture_output=True, text=True)
    if done.returncode and "already exists" not in done.stderr.lower():
        sys.exit(done.stderr)
for field in spec["fieldOverrides"]:
    subprocess.run(["gcloud", f"--project={project}", "--quiet", "firestore", "indexes",
                    "fields", "update", field["fieldPath"],
                    f"--collection-group={field['collectionGroup']}", "--disable-indexes",
                    "--async"], check=True, capture_output=True)
PY

step "Sweeper schedule"
SWEEPER_URL=$(g functions describe imgpipe-sweeper --region="$REGION" --gen2 \
  --format='value(serviceConfig.uri)' 2>/dev/null || true)
if [ -z "$SWEEPER_URL" ]; then
  echo "imgpipe-sweeper is not deployed yet: run scripts/deploy.sh, then this script again"
else
  AUDIENCE=${IMGPIPE_OIDC_AUDIENCE:-imgpipe-tasks}
  args=(--location="$REGION" --schedule="*/5 * * * *" --uri="$SWEEPER_URL/sweep"
    --http-method=POST --oidc-service-account-email="$TASKS_SA"
    --oidc-token-audience="$AUDIENCE")
  if g scheduler jobs describe imgpipe-sweeper --location="$REGION" >/dev/null 2>&1; then
    g scheduler jobs update http imgpipe-sweeper "${args[@]}" >/dev/null
  else
    g scheduler jobs create http imgpipe-sweeper "${args[@]}"
  fi
fi
echo "setup done"
