#!/usr/bin/env bash
# Deploys imgpipe's seven Cloud Functions (2nd gen, python311) from the imgpipe wheel, then
# what needs them to exist: the task endpoints' audience and invokers, the ingest trigger's
# invoker, and the sweeper's Cloud Scheduler job. Run scripts/setup.sh first (once).
#
#   PROJECT=my-proj [REGION=us-central1] bash scripts/deploy.sh [--dry-run] [--env NAME] [WHEEL]
#
# Without WHEEL it builds one (scripts/lib/build_wheel.sh: maturin with zig, no Docker; needs
# the Rust toolchain). cloudbuild.yaml builds the wheel in its own step and passes it here.
# The seven deploys run in parallel; each one that fails is named and the script exits 1.
# Settings (environment): PROJECT, REGION, BUCKET, ORIGINALS_BUCKET, UPLOAD_BUCKET, QUEUE,
# QUEUE_HIGH (as setup.sh), PUBLIC_API (true: upload/enqueue/status take requests from anyone
# holding the API key; false: callers also need run.invoker), IMGPIPE_URL_MODE (public |
# signed), IMGPIPE_MAX_ATTEMPTS, IMGPIPE_RENDITIONS, IMGPIPE_SHUTDOWN_GRACE,
# IMGPIPE_MAX_OBJECT_BYTES, IMGPIPE_OIDC_AUDIENCE, IMGPIPE_EVENTS_TOPIC, IMGPIPE_WEBHOOK_URL
# (its secret from setup.sh), WORKER_MAX_INSTANCES (50).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  usage_common
}
parse_common_args "$@"
[ ${#ARGS[@]} -le 1 ] || die "at most one wheel (see --help)"
wheel=${ARGS[0]:-}

URL_MODE=${IMGPIPE_URL_MODE:-public}
PUBLIC_API=${PUBLIC_API:-true}
WORKER_MAX_INSTANCES=${WORKER_MAX_INSTANCES:-50}

# ---------------------------------------------------------------- preflight (changes nothing)
step "Preflight"
$DRY_RUN && note "dry run: look-ups run, nothing is changed"
preflight_account
resolve_names
case $URL_MODE in public | signed) ;; *) die "IMGPIPE_URL_MODE must be public or signed" ;; esac
case $PUBLIC_API in true | false) ;; *) die "PUBLIC_API must be true or false" ;; esac
[ -z "$wheel" ] || [ -f "$wheel" ] || die "no wheel at $wheel"
require_apis "run scripts/setup.sh${ENV_NAME:+ --env $ENV_NAME} first" \
  cloudfunctions run cloudbuild iam secretmanager cloudscheduler eventarc
for sa in "$RUNTIME_SA" "$TASKS_SA" "$BUILD_SA" "$TRIGGER_SA"; do
  lookup found "service account $sa" g iam service-accounts describe "$sa" --format='value(email)' \
    || die "preflight: $sa does not exist: run scripts/setup.sh${ENV_NAME:+ --env $ENV_NAME} first"
done
lookup found "secret $SECRET" g secrets describe "$SECRET" --format='value(name)' \
  || die "preflight: the secret $SECRET does not exist: run scripts/setup.sh${ENV_NAME:+ --env $ENV_NAME} first"
secrets="IMGPIPE_API_TOKEN=$SECRET:latest"
if [ -n "${IMGPIPE_WEBHOOK_URL:-}" ]; then
  lookup found "secret $WEBHOOK_SECRET" g secrets describe "$WEBHOOK_SECRET" --format='value(name)' \
    || die "preflight: IMGPIPE_WEBHOOK_URL needs the secret $WEBHOOK_SECRET: run IMGPIPE_WEBHOOK_SECRET=... scripts/setup.sh${ENV_NAME:+ --env $ENV_NAME}"
  secrets+=",IMGPIPE_WEBHOOK_SECRET=$WEBHOOK_SECRET:latest"
fi

# ---------------------------------------------------------------- the wheel and the source
step "Wheel"
if [ -z "$wheel" ]; then
  if $DRY_RUN; then
    note "[dry-run] bash scripts/lib/build_wheel.sh $ROOT/dist"
    wheel=$ROOT/dist/imgpipe-0.1.0-$(. "$ROOT/scripts/lib/wheel.env" && echo "$WHEEL_TAG").whl
  else
    wheel=$(bash "$ROOT/scripts/lib/build_wheel.sh" "$ROOT/dist" | tail -n 1) \
      || die "building the wheel failed (its output is above)"
  fi
fi
note "wheel: $wheel"
# Each environment keeps its state in its own Firestore database, if this imgpipe reads the
# setting that names it; an older one would share (default) with the other environments.
if [ -n "$SUFFIX" ] && [ -f "$wheel" ] && ! "$PYTHON" -S - "$wheel" <<'PY'; then
import sys, zipfile
try:
    text = zipfile.ZipFile(sys.argv[1]).read("imgpipe/settings.py").decode()
except (KeyError, OSError, zipfile.BadZipFile):
    sys.exit(1)
sys.exit(0 if "IMGPIPE_FIRESTORE_DATABASE" in text else 1)
PY
  note "WARNING: this wheel's imgpipe does not read IMGPIPE_FIRESTORE_DATABASE: environment $ENV_NAME would share the (default) database's state with the others"
fi

# The source each function deploys: main.py, the wheel, requirements naming both; its settings
# go beside it (--env-vars-file), the secrets through Secret Manager (--set-secrets).
src=$WORK/source
mkdir "$src"
cp "$ROOT/functions/main.py" "$src/"
[ -f "$wheel" ] && cp "$wheel" "$src/"
{
  cat "$ROOT/functions/requirements.txt"
  echo "./$(basename "$wheel")"
} >"$src/requirements.txt"
env_file=$WORK/env.yaml
{
  echo "IMGPIPE_BACKEND: gcp"
  echo "GOOGLE_CLOUD_PROJECT: \"$PROJECT\""
  echo "IMGPIPE_LOCATION: \"$REGION\""
  echo "IMGPIPE_BUCKET: \"$BUCKET\""
  echo "IMGPIPE_ORIGINALS_BUCKET: \"$ORIGINALS_BUCKET\""
  echo "IMGPIPE_UPLOAD_BUCKET: \"$UPLOAD_BUCKET\""
  echo "IMGPIPE_QUEUE_HIGH: \"$QUEUE_HIGH\""
  echo "IMGPIPE_QUEUE: \"$QUEUE\""
  echo "IMGPIPE_WORKER_URL: \"$BASE/$(fn_name worker)/tasks/process\""
  echo "IMGPIPE_FAILURE_URL: \"$BASE/$(fn_name failure)/tasks/failed\""
  echo "IMGPIPE_TASK_AUTH: oidc"
  echo "IMGPIPE_TASKS_SERVICE_ACCOUNT: \"$TASKS_SA\""
  echo "IMGPIPE_OIDC_AUDIENCE: \"$AUDIENCE\""
  echo "IMGPIPE_URL_MODE: \"$URL_MODE\""
  echo "IMGPIPE_MAX_ATTEMPTS: \"$MAX_ATTEMPTS\""
  echo "IMGPIPE_RENDITIONS: \"${IMGPIPE_RENDITIONS:-320,640,1280,1920,3840}\""
  # Cloud Run sends SIGKILL 10 s after SIGTERM: finish within that, release the rest.
  echo "IMGPIPE_SHUTDOWN_GRACE: \"${IMGPIPE_SHUTDOWN_GRACE:-8}\""
  # The operator's own choices, when set (see the README's configuration table).
  for name in IMGPIPE_FORMATS IMGPIPE_AVIF_QUALITY IMGPIPE_AVIF_SPEED IMGPIPE_CROP \
    IMGPIPE_MAX_PIXELS IMGPIPE_MAX_UPLOAD_BYTES IMGPIPE_MAX_OBJECT_BYTES IMGPIPE_WEBHOOK_URL; do
    [ -z "${!name:-}" ] || printf '%s: "%s"\n' "$name" "${!name}"
  done
  [ -z "$EVENTS_TOPIC" ] || echo "IMGPIPE_EVENTS_TOPIC: \"$EVENTS_TOPIC\""
  # Each environment has its own Firestore database (setup.sh creates it).
  [ -z "$SUFFIX" ] || echo "IMGPIPE_FIRESTORE_DATABASE: \"$FIRESTORE_DB\""
} >"$env_file"

# ---------------------------------------------------------------- the seven functions
step "Functions (seven deploys in parallel)"
api_access=(--no-allow-unauthenticated)
[ "$PUBLIC_API" = true ] && api_access=(--allow-unauthenticated)
common=(--gen2 --region="$REGION" --runtime=python311 --source="$src"
  --service-account="$RUNTIME_SA"
  --build-service-account="projects/$PROJECT/serviceAccounts/$BUILD_SA"
  --env-vars-file="$env_file" --set-secrets="$secrets")
# shellcheck disable=SC2034 # used through deploy_flags
declare -A FLAGS=(
  [upload]="--trigger-http ${api_access[*]} --memory=1Gi --timeout=120s"
  [enqueue]="--trigger-http ${api_access[*]} --memory=512Mi --timeout=540s"
  [status]="--trigger-http ${api_access[*]} --memory=512Mi --timeout=60s"
  # One image per instance at a time, CPU-bound, for up to the dispatch deadline (600 s).
  [worker]="--trigger-http --no-allow-unauthenticated --memory=4Gi --cpu=2 --concurrency=1 --timeout=600s --max-instances=$WORKER_MAX_INSTANCES"
  [failure]="--trigger-http --no-allow-unauthenticated --memory=512Mi --timeout=60s"
  [sweeper]="--trigger-http --no-allow-unauthenticated --memory=512Mi --timeout=${SWEEPER_TIMEOUT}s"
  [ingest]="--memory=1Gi --timeout=300s --trigger-location=$REGION --trigger-event-filters=type=google.cloud.storage.object.v1.finalized --trigger-event-filters=bucket=$UPLOAD_BUCKET --trigger-service-account=$TRIGGER_SA --retry"
)
logs=()
pids=()
for fn in "${FUNCTIONS[@]}"; do
  read -r -a extra <<<"${FLAGS[$fn]}"
  log=$WORK/deploy-$fn.log
  logs+=("$log")
  (change "deploy $(fn_name "$fn")" g functions deploy "$(fn_name "$fn")" "${common[@]}" \
    --entry-point="$fn" "${extra[@]}") >"$log" 2>&1 &
  pids+=($!)
done
failed=()
for i in "${!FUNCTIONS[@]}"; do
  if wait "${pids[$i]}"; then
    $DRY_RUN && cat "${logs[$i]}" >&2
    note "$(fn_name "${FUNCTIONS[$i]}") deployed"
  else
    failed+=("$(fn_name "${FUNCTIONS[$i]}")")
    {
      printf -- '--- %s (last 40 lines) ---\n' "$(fn_name "${FUNCTIONS[$i]}")"
      tail -n 40 "${logs[$i]}"
    } >&2
  fi
done
[ ${#failed[@]} -eq 0 ] || die "FAILED: deploy of ${failed[*]} (the other functions deployed; fix and run deploy.sh again)"

# ---------------------------------------------------------------- invokers and audiences
step "Who may call the private functions"
# Cloud Tasks and Cloud Scheduler mint OIDC tokens for $AUDIENCE: the task endpoints accept it
# at Cloud Run's IAM check, and only the tasks account may invoke them.
for fn in worker failure sweeper; do
  service=$(fn_name "$fn") described=""
  lookup described "the Cloud Run service $service" g run services describe "$service" \
    --region="$REGION" --format=json \
    || $DRY_RUN || die "the Cloud Run service $service is missing after its deploy"
  svc_file=$WORK/run-$fn.json
  printf '%s' "${described:-{\}}" >"$svc_file"
  if helper custom-audiences "$svc_file" | grep -qxF "$AUDIENCE"; then
    note "$service accepts the audience $AUDIENCE"
  else
    change "custom audience $AUDIENCE on $service" g run services update "$service" \
      --region="$REGION" --add-custom-audiences="$AUDIENCE"
  fi
  ensure_bindings run "$service" roles/run.invoker "serviceAccount:$TASKS_SA"
done
# Eventarc delivers the uploads bucket's finalize events to ingest as the trigger account.
ensure_bindings run "$(fn_name ingest)" roles/run.invoker "serviceAccount:$TRIGGER_SA"

# ---------------------------------------------------------------- the sweeper's schedule
step "Sweeper schedule (Cloud Scheduler)"
sweeper_url=""
lookup sweeper_url "the URL of $(fn_name sweeper)" g functions describe "$(fn_name sweeper)" \
  --gen2 --region="$REGION" --format='value(serviceConfig.uri)' \
  || $DRY_RUN || die "$(fn_name sweeper) is missing after its deploy"
[ -n "$sweeper_url" ] || sweeper_url="https://$(fn_name sweeper)-(its run.app URL)"
job=(--location="$REGION" --schedule="*/5 * * * *" --time-zone=Etc/UTC
  --uri="$sweeper_url/sweep" --http-method=POST
  --oidc-service-account-email="$TASKS_SA" --oidc-token-audience="$AUDIENCE"
  --attempt-deadline="$((SWEEPER_TIMEOUT + 30))s")
if lookup found "scheduler job $SCHEDULER_JOB" g scheduler jobs describe "$SCHEDULER_JOB" \
  --location="$REGION" --format='value(name)'; then
  change "update scheduler job $SCHEDULER_JOB" g scheduler jobs update http "$SCHEDULER_JOB" "${job[@]}"
else
  change "create scheduler job $SCHEDULER_JOB" g scheduler jobs create http "$SCHEDULER_JOB" "${job[@]}"
fi

step "Done"
if $DRY_RUN; then
  note "dry run: nothing was deployed"
else
  for fn in upload enqueue status; do note "$(fn_name "$fn"): $BASE/$(fn_name "$fn")"; done
  note "next: PROJECT=$PROJECT bash scripts/verify.sh${ENV_NAME:+ --env $ENV_NAME}"
fi
