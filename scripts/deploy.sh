#!/usr/bin/env bash
# Deploys the seven functions (Cloud Functions 2nd gen, python311) from a built imgpipe wheel.
#
#   PROJECT=my-proj REGION=us-central1 bash scripts/deploy.sh [dist/imgpipe-*.whl]
#
# Without a wheel argument it builds one with maturin (abi3, manylinux). cloudbuild.yaml
# runs the same script after building the wheel in its own step. Run scripts/setup.sh first
# (and again after the first deploy, for the sweeper's schedule).
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=${PROJECT:?set PROJECT}
REGION=${REGION:-us-central1}
BUCKET=${BUCKET:-$PROJECT-imgpipe}
UPLOAD_BUCKET=${UPLOAD_BUCKET:-$PROJECT-imgpipe-uploads}
URL_MODE=${IMGPIPE_URL_MODE:-public}
AUDIENCE=${IMGPIPE_OIDC_AUDIENCE:-imgpipe-tasks}
PUBLIC_API=${PUBLIC_API:-true}   # upload/enqueue/status reachable without IAM (X-API-Key only)
RUNTIME_SA=imgpipe-runtime@$PROJECT.iam.gserviceaccount.com
TASKS_SA=imgpipe-tasks@$PROJECT.iam.gserviceaccount.com
BASE=https://$REGION-$PROJECT.cloudfunctions.net
g() { gcloud --project="$PROJECT" --quiet "$@"; }

wheel=${1:-}
if [ -z "$wheel" ]; then
  maturin build --release --out dist --compatibility manylinux_2_28 --interpreter python3.11
  wheel=$(ls -t dist/imgpipe-*abi3*manylinux*.whl | head -n 1)
fi
[ -f "$wheel" ] || { echo "no wheel at $wheel" >&2; exit 1; }

# The source each function deploys: main.py, the wheel, requirements naming both.
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp functions/main.py "$src/"
cp "$wheel" "$src/"
{ cat functions/requirements.txt; echo "./$(basename "$wheel")"; } > "$src/requirements.txt"

cat > "$src/.env.yaml" <<YAML
IMGPIPE_BACKEND: gcp
GOOGLE_CLOUD_PROJECT: "$PROJECT"
IMGPIPE_LOCATION: "$REGION"
IMGPIPE_BUCKET: "$BUCKET"
IMGPIPE_UPLOAD_BUCKET: "$UPLOAD_BUCKET"
IMGPIPE_QUEUE_HIGH: "${QUEUE_HIGH:-high}"
IMGPIPE_QUEUE: "${QUEUE:-normal}"
IMGPIPE_WORKER_URL: "$BASE/imgpipe-worker/tasks/process"
IMGPIPE_FAILURE_URL: "$BASE/imgpipe-failure/tasks/failed"
IMGPIPE_TASK_AUTH: oidc
IMGPIPE_TASKS_SERVICE_ACCOUNT: "$TASKS_SA"
IMGPIPE_OIDC_AUDIENCE: "$AUDIENCE"
IMGPIPE_URL_MODE: "$URL_MODE"
IMGPIPE_MAX_ATTEMPTS: "${IMGPIPE_MAX_ATTEMPTS:-5}"
IMGPIPE_RENDITIONS: "${IMGPIPE_RENDITIONS:-320,640,1280,1920,3840}"
YAML

deploy() {  # name target extra-flags...
  local name=$1 target=$2
  shift 2
  g functions deploy "imgpipe-$name" --gen2 --region="$REGION" --runtime=python311 \
    --source="$src" --entry-point="$target" --service-account="$RUNTIME_SA" \
    --env-vars-file="$src/.env.yaml" \
    --set-secrets=IMGPIPE_API_TOKEN=imgpipe-api-token:latest "$@"
}
api_access=(--no-allow-unauthenticated)
[ "$PUBLIC_API" = true ] && api_access=(--allow-unauthenticated)

deploy upload upload --trigger-http "${api_access[@]}" --memory=1Gi --timeout=120s &
deploy enqueue enqueue --trigger-http "${api_access[@]}" --memory=512Mi --timeout=540s &
deploy status status --trigger-http "${api_access[@]}" --memory=512Mi &
# The worker renders one image per instance at a time: CPU-bound, up to the dispatch deadline.
deploy worker worker --trigger-http --no-allow-unauthenticated --memory=4Gi --cpu=2 \
  --concurrency=1 --timeout=600s --max-instances=50 &
deploy failure failure --trigger-http --no-allow-unauthenticated --memory=512Mi &
deploy sweeper sweeper --trigger-http --no-allow-unauthenticated --memory=512Mi --timeout=300s &
deploy ingest ingest --memory=1Gi --timeout=300s \
  --trigger-event-filters="type=google.cloud.storage.object.v1.finalized" \
  --trigger-event-filters="bucket=$UPLOAD_BUCKET" --trigger-service-account="$RUNTIME_SA" \
  --retry &
wait

# Cloud Tasks and Cloud Scheduler mint OIDC tokens for AUDIENCE: the private functions must
# accept it at Cloud Run's IAM check, and only the tasks account may invoke them.
for name in worker failure sweeper; do
  g run services update "imgpipe-$name" --region="$REGION" \
    --add-custom-audiences="$AUDIENCE" >/dev/null
  g functions add-invoker-policy-binding "imgpipe-$name" --region="$REGION" \
    --member="serviceAccount:$TASKS_SA" >/dev/null
done
echo "deployed: $BASE/imgpipe-{upload,enqueue,status,worker,failure,sweeper}"
