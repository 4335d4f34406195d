#!/usr/bin/env bash
# Google Cloud setup for imgpipe: everything the seven functions need before scripts/deploy.sh
# deploys them. Idempotent: each step looks up what exists, creates only what is missing and
# converges settings (a second run creates nothing).
#
#   PROJECT=my-proj [REGION=us-central1] bash scripts/setup.sh [--dry-run] [--env NAME]
#
# Creates, in this order (names without --env; with it each gets the suffix -NAME):
#   APIs            the 16 services below, only those not enabled yet
#   accounts        imgpipe-runtime (the functions), imgpipe-tasks (OIDC of tasks and the
#                   scheduler), imgpipe-build (the functions' builds), imgpipe-trigger
#                   (Eventarc -> ingest), imgpipe-deployer (cloudbuild.yaml runs as it)
#   IAM             the roles each account needs, on the narrowest resource that takes them
#   buckets         $PROJECT-imgpipe (outputs; allUsers may read objects, not list them),
#                   $PROJECT-imgpipe-originals (private, public access prevention enforced),
#                   $PROJECT-imgpipe-uploads (private; CORS for signed PUTs; 7-day lifecycle)
#   secret          imgpipe-api-token (generated once; mounted as IMGPIPE_API_TOKEN)
#   queues          high and normal (flags from imgpipe.gcp.queueflags, the one source of truth)
#   Firestore       the database and the indexes of firestore.indexes.json
#   monitoring      log-based metrics (dead letters, failed attempts), alert policies (dead
#                   letters, queue backlog), an e-mail channel when ALERT_EMAIL is set
# Settings (environment): PROJECT, REGION, BUCKET, ORIGINALS_BUCKET, UPLOAD_BUCKET, QUEUE,
# QUEUE_HIGH, IMGPIPE_MAX_ATTEMPTS, PUBLIC_RENDITIONS (true; false: no public binding, serve
# signed URLs with IMGPIPE_URL_MODE=signed at deploy), ALERT_EMAIL, BACKLOG_DEPTH (1000 tasks),
# BACKLOG_DELAY (600 s), ALERTS (true; false: no alert policies), MOVE_ORIGINALS (true: move
# originals/ found in the outputs bucket), IMGPIPE_EVENTS_TOPIC (creates the topic, lets the
# runtime publish), IMGPIPE_WEBHOOK_SECRET (kept in Secret Manager as imgpipe-webhook-secret).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  usage_common
}
parse_common_args "$@"
[ ${#ARGS[@]} -eq 0 ] || die "unexpected argument ${ARGS[0]} (see --help)"

PUBLIC_RENDITIONS=${PUBLIC_RENDITIONS:-true}
BACKLOG_DEPTH=${BACKLOG_DEPTH:-1000}
BACKLOG_DELAY=${BACKLOG_DELAY:-600}
APIS=(
  iam.googleapis.com iamcredentials.googleapis.com cloudresourcemanager.googleapis.com
  cloudfunctions.googleapis.com run.googleapis.com cloudbuild.googleapis.com
  artifactregistry.googleapis.com eventarc.googleapis.com pubsub.googleapis.com
  cloudtasks.googleapis.com firestore.googleapis.com storage.googleapis.com
  secretmanager.googleapis.com cloudscheduler.googleapis.com logging.googleapis.com
  monitoring.googleapis.com
)

# ---------------------------------------------------------------- preflight (changes nothing)
step "Preflight"
$DRY_RUN && note "dry run: look-ups run, nothing is changed"
preflight_account
resolve_names
[ -f "$ROOT/firestore.indexes.json" ] || die "preflight: $ROOT/firestore.indexes.json is missing"
case $PUBLIC_RENDITIONS in true | false) ;; *) die "PUBLIC_RENDITIONS must be true or false" ;; esac

billing="" rc=0
probe billing "billing of $PROJECT" \
  gcloud billing projects describe "$PROJECT" --format='value(billingEnabled)' || rc=$?
if [ "$rc" -eq 0 ]; then
  case ${billing,,} in
    true) note "billing: enabled" ;;
    *) die "preflight: billing is not enabled on $PROJECT: link a billing account (gcloud billing projects link $PROJECT --billing-account=ID)" ;;
  esac
else
  note "WARNING: could not check billing (see above); continuing"
fi

case ${ALERTS:-true} in true | false) ;; *) die "ALERTS must be true or false" ;; esac
if [ "${ALERTS:-true}" = true ]; then
  for track in "alpha monitoring policies" "beta monitoring channels"; do
    # shellcheck disable=SC2086 # the words of a command path
    gcloud $track list --help >/dev/null 2>&1 \
      || die "preflight: 'gcloud $track' is not installed: gcloud components install ${track%% *} (or apt-get install google-cloud-cli; ALERTS=false skips the alert policies)"
  done
fi

# The queues' settings come from imgpipe's own defaults (one source of truth with the worker).
declare -A QUEUE_FLAGS
for q in "$QUEUE_HIGH" "$QUEUE"; do
  flags=$WORK/queue-flags-$q
  if ! PYTHONPATH="$ROOT/shared${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m imgpipe.gcp.queueflags \
    "$q" --max-attempts "$MAX_ATTEMPTS" >"$flags"; then
    die "preflight: the queue settings helper failed (python -m imgpipe.gcp.queueflags $q --max-attempts $MAX_ATTEMPTS)"
  fi
  grep -q -- '^--max-attempts=' "$flags" \
    || die "preflight: the queue settings helper printed no --max-attempts for $q"
  QUEUE_FLAGS[$q]=$flags
done

enabled=""
lookup enabled "the enabled APIs" g services list --enabled --format='value(config.name)' || true
missing=()
for api in "${APIS[@]}"; do
  grep -qx "$api" <<<"$enabled" || missing+=("$api")
done

# ---------------------------------------------------------------- APIs
step "APIs"
if [ ${#missing[@]} -eq 0 ]; then
  note "all ${#APIS[@]} APIs are enabled"
else
  PENDING_APIS=" ${missing[*]} "
  change "enable ${missing[*]} (needs serviceusage.services.enable: Owner or roles/serviceusage.serviceUsageAdmin)" \
    g services enable "${missing[@]}"
fi

# ---------------------------------------------------------------- service accounts
step "Service accounts"
declare -A PURPOSE=(
  [runtime]="the functions' runtime identity"
  [tasks]="OIDC identity of Cloud Tasks and Cloud Scheduler"
  [build]="builds the functions' containers"
  [trigger]="Eventarc's deliveries to ingest"
  [deployer]="cloudbuild.yaml's deploy"
)
for id in runtime tasks build trigger deployer; do
  email=imgpipe-$id$SUFFIX@$PROJECT.iam.gserviceaccount.com
  if lookup found "service account $email" \
    g iam service-accounts describe "$email" --format='value(email)'; then
    note "$email exists"
  else
    change "create service account $email" g iam service-accounts create "imgpipe-$id$SUFFIX" \
      --display-name="imgpipe$SUFFIX: ${PURPOSE[$id]}"
  fi
done

# ---------------------------------------------------------------- IAM
step "IAM: project roles"
GCS_AGENT=""
lookup GCS_AGENT "the Cloud Storage service agent" g storage service-agent \
  || GCS_AGENT="service-$PROJECT_NUMBER@gs-project-accounts.iam.gserviceaccount.com"
RUNTIME="serviceAccount:$RUNTIME_SA"
DEPLOYER="serviceAccount:$DEPLOYER_SA"
ensure_bindings project "$PROJECT" \
  roles/datastore.user "$RUNTIME" \
  roles/logging.logWriter "$RUNTIME" \
  roles/cloudbuild.builds.builder "serviceAccount:$BUILD_SA" \
  roles/eventarc.eventReceiver "serviceAccount:$TRIGGER_SA" \
  roles/pubsub.publisher "serviceAccount:$GCS_AGENT" \
  roles/cloudbuild.builds.builder "$DEPLOYER" \
  roles/cloudfunctions.developer "$DEPLOYER" \
  roles/run.admin "$DEPLOYER" \
  roles/cloudscheduler.admin "$DEPLOYER" \
  roles/serviceusage.serviceUsageConsumer "$DEPLOYER"
# Earlier releases granted these project-wide; each now sits on its own resource.
revoke_bindings project "$PROJECT" \
  roles/run.invoker "serviceAccount:$TASKS_SA" \
  roles/cloudtasks.enqueuer "$RUNTIME" \
  roles/cloudtasks.viewer "$RUNTIME" \
  roles/eventarc.eventReceiver "$RUNTIME"

step "IAM: who may act as whom"
# The runtime creates tasks carrying the tasks account's OIDC token, and signs URLs as itself.
ensure_bindings sa "$TASKS_SA" roles/iam.serviceAccountUser "$RUNTIME" \
  roles/iam.serviceAccountUser "$DEPLOYER"
ensure_bindings sa "$RUNTIME_SA" roles/iam.serviceAccountTokenCreator "$RUNTIME" \
  roles/iam.serviceAccountUser "$DEPLOYER"
ensure_bindings sa "$BUILD_SA" roles/iam.serviceAccountUser "$DEPLOYER"
ensure_bindings sa "$TRIGGER_SA" roles/iam.serviceAccountUser "$DEPLOYER"

# ---------------------------------------------------------------- buckets
step "Buckets"
for b in "$BUCKET" "$ORIGINALS_BUCKET" "$UPLOAD_BUCKET"; do
  private=true
  [ "$b" = "$BUCKET" ] && private=false
  pap=""
  if lookup pap "bucket gs://$b" \
    g storage buckets describe "gs://$b" --format='value(public_access_prevention)'; then
    note "gs://$b exists"
    if $private && [ "$pap" != enforced ]; then
      change "enforce public access prevention on gs://$b" \
        g storage buckets update "gs://$b" --public-access-prevention
    fi
  else
    flags=(--location="$REGION" --uniform-bucket-level-access)
    $private && flags+=(--public-access-prevention)
    change "create bucket gs://$b" g storage buckets create "gs://$b" "${flags[@]}"
  fi
done
# Uploads are working copies: browsers PUT them through signed URLs; kept a week.
cors=$WORK/cors.json
lifecycle=$WORK/lifecycle.json
cat >"$cors" <<'JSON'
[{"origin": ["*"], "method": ["PUT"], "responseHeader": ["Content-Type"], "maxAgeSeconds": 3600}]
JSON
cat >"$lifecycle" <<'JSON'
{"rule": [{"action": {"type": "Delete"}, "condition": {"age": 7}}]}
JSON
change "CORS and lifecycle of gs://$UPLOAD_BUCKET" g storage buckets update "gs://$UPLOAD_BUCKET" \
  --cors-file="$cors" --lifecycle-file="$lifecycle"

step "IAM: buckets"
for b in "$BUCKET" "$ORIGINALS_BUCKET" "$UPLOAD_BUCKET"; do
  ensure_bindings bucket "$b" roles/storage.objectAdmin "$RUNTIME"
done
# The outputs bucket serves renditions to anyone who has their URL, and lists nothing.
if [ "$PUBLIC_RENDITIONS" = true ]; then
  ensure_bindings bucket "$BUCKET" roles/storage.legacyObjectReader allUsers
  revoke_bindings bucket "$BUCKET" roles/storage.objectViewer allUsers \
    roles/storage.objectViewer allAuthenticatedUsers
else
  revoke_bindings bucket "$BUCKET" roles/storage.legacyObjectReader allUsers \
    roles/storage.objectViewer allUsers roles/storage.objectViewer allAuthenticatedUsers
fi
# Originals keep their EXIF (GPS included): nothing public, ever, on the private buckets.
for b in "$ORIGINALS_BUCKET" "$UPLOAD_BUCKET"; do
  public_bindings bucket "$b"
  [ -z "$PUBLIC" ] || mapfile -t public < <(tr '\t' '\n' <<<"$PUBLIC")
  [ -z "$PUBLIC" ] || revoke_bindings bucket "$b" "${public[@]}"
done
# Originals stored by earlier releases under originals/ in the public outputs bucket.
old=""
if lookup old "originals left in gs://$BUCKET" g storage objects list \
  "gs://$BUCKET/originals/*" --limit=1 --format='value(name)' && [ -n "$old" ]; then
  if [ "${MOVE_ORIGINALS:-false}" = true ]; then
    change "move the originals out of the public bucket" \
      g storage mv "gs://$BUCKET/originals/*" "gs://$ORIGINALS_BUCKET/originals/"
  else
    die "gs://$BUCKET/originals/ holds originals (with their EXIF) in the public outputs bucket: re-run with MOVE_ORIGINALS=true to move them to gs://$ORIGINALS_BUCKET"
  fi
fi

# ---------------------------------------------------------------- secret
step "API token (Secret Manager; deploy.sh mounts it as IMGPIPE_API_TOKEN)"
if lookup found "secret $SECRET" g secrets describe "$SECRET" --format='value(name)'; then
  note "$SECRET exists"
else
  token_file=$WORK/token  # $WORK is private to this user (mktemp -d)
  if ! $DRY_RUN; then
    "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32), end="")' >"$token_file"
  fi
  change "create secret $SECRET" g secrets create "$SECRET" --data-file="$token_file" \
    --replication-policy=automatic
  note "the API token: gcloud secrets versions access latest --secret=$SECRET --project=$PROJECT"
fi
# deploy.sh (also as the deployer, in Cloud Build) checks that the secret exists.
ensure_bindings secret "$SECRET" roles/secretmanager.secretAccessor "$RUNTIME" \
  roles/secretmanager.viewer "$DEPLOYER"

# ---------------------------------------------------------------- events (optional)
if [ -n "${IMGPIPE_WEBHOOK_SECRET:-}" ]; then
  step "Webhook secret (Secret Manager; deploy.sh mounts it as IMGPIPE_WEBHOOK_SECRET)"
  printf '%s' "$IMGPIPE_WEBHOOK_SECRET" >"$WORK/webhook-secret"
  current=""
  if lookup current "secret $WEBHOOK_SECRET" g secrets versions access latest --secret="$WEBHOOK_SECRET"; then
    if [ "$current" = "$IMGPIPE_WEBHOOK_SECRET" ]; then
      note "$WEBHOOK_SECRET holds it already"
    else
      change "new version of secret $WEBHOOK_SECRET" g secrets versions add "$WEBHOOK_SECRET" \
        --data-file="$WORK/webhook-secret"
    fi
  else
    change "create secret $WEBHOOK_SECRET" g secrets create "$WEBHOOK_SECRET" \
      --data-file="$WORK/webhook-secret" --replication-policy=automatic
  fi
  ensure_bindings secret "$WEBHOOK_SECRET" roles/secretmanager.secretAccessor "$RUNTIME" \
    roles/secretmanager.viewer "$DEPLOYER"
fi
if [ -n "$EVENTS_TOPIC" ]; then
  step "Events topic (Pub/Sub)"
  topic=${EVENTS_TOPIC##*/}
  if lookup found "topic $topic" g pubsub topics describe "$topic" --format='value(name)'; then
    note "topic $topic exists"
  else
    change "create topic $topic" g pubsub topics create "$topic"
  fi
  ensure_bindings topic "$topic" roles/pubsub.publisher "$RUNTIME"
fi

# ---------------------------------------------------------------- queues
step "Cloud Tasks queues"
for q in "$QUEUE_HIGH" "$QUEUE"; do
  mapfile -t flags <"${QUEUE_FLAGS[$q]}"
  if lookup found "queue $q" g tasks queues describe "$q" --location="$REGION" --format='value(name)'; then
    change "update queue $q" g tasks queues update "$q" --location="$REGION" "${flags[@]}"
  else
    change "create queue $q" g tasks queues create "$q" --location="$REGION" "${flags[@]}"
  fi
  # Create tasks; read the queue's retry settings and its tasks; pause and resume it (status).
  ensure_bindings queue "$q" roles/cloudtasks.enqueuer "$RUNTIME" \
    roles/cloudtasks.viewer "$RUNTIME" roles/cloudtasks.queueAdmin "$RUNTIME"
done

# ---------------------------------------------------------------- Firestore
step "Firestore database $FIRESTORE_DB and its indexes"
if lookup found "Firestore database $FIRESTORE_DB" \
  g firestore databases describe --database="$FIRESTORE_DB" --format='value(name)'; then
  note "$FIRESTORE_DB exists"
else
  change "create Firestore database $FIRESTORE_DB" g firestore databases create \
    --database="$FIRESTORE_DB" --location="$REGION" --type=firestore-native
fi
listing=""
lookup listing "composite indexes of $FIRESTORE_DB" \
  g firestore indexes composite list --database="$FIRESTORE_DB" --format=json || listing='[]'
list_file=$WORK/indexes.json
wanted=$WORK/indexes-missing
printf '%s' "${listing:-[]}" >"$list_file"
helper missing-indexes "$ROOT/firestore.indexes.json" "$list_file" >"$wanted" \
  || die "reading firestore.indexes.json failed"
[ -s "$wanted" ] || note "every composite index exists"
while IFS=$'\t' read -r -a flags; do
  [ ${#flags[@]} -gt 0 ] || continue
  # Index creates contend with each other ("too much contention"): retried with backoff.
  eventual "create index ${flags[*]}" g firestore indexes composite create \
    --database="$FIRESTORE_DB" "${flags[@]}" --async
done <"$wanted"
fields=$WORK/field-overrides
helper field-overrides "$ROOT/firestore.indexes.json" >"$fields" \
  || die "reading firestore.indexes.json failed"
while IFS=$'\t' read -r group path; do
  field=""
  field_file=$WORK/field-$group-$path.json
  if lookup field "index settings of $group.$path" g firestore indexes fields describe "$path" \
    --collection-group="$group" --database="$FIRESTORE_DB" --format=json; then
    printf '%s' "$field" >"$field_file"
    if helper field-disabled "$field_file"; then
      note "$group.$path is not indexed"
      continue
    fi
  fi
  eventual "stop indexing $group.$path" g firestore indexes fields update "$path" \
    --collection-group="$group" --database="$FIRESTORE_DB" --disable-indexes --async
done <"$fields"

# ---------------------------------------------------------------- monitoring
step "Monitoring: log-based metrics and alert policies"
# Built on the functions' structured logs (imgpipe.gcp.logging): the failure function logs
# "POST /tasks/failed -> 200" for each dead letter it records; the worker logs each attempt
# with its http_status, and status "failed" for a permanent failure.
DEAD_METRIC=imgpipe-dead-letters$SUFFIX
FAILED_METRIC=imgpipe-failed-attempts$SUFFIX
dead_cfg=$WORK/metric-dead-letters.yaml
cat >"$dead_cfg" <<YAML
description: "imgpipe$SUFFIX: dead letters recorded by $(fn_name failure)"
filter: >-
  resource.type="cloud_run_revision"
  AND resource.labels.service_name="$(fn_name failure)"
  AND jsonPayload.logger="imgpipe.functions"
  AND jsonPayload.message:"/tasks/failed"
  AND jsonPayload.http_status=200
  AND jsonPayload.status="dead_letter"
metricDescriptor:
  metricKind: DELTA
  valueType: INT64
  unit: "1"
YAML
failed_cfg=$WORK/metric-failed-attempts.yaml
cat >"$failed_cfg" <<YAML
description: "imgpipe$SUFFIX: task attempts that failed in $(fn_name worker)"
filter: >-
  resource.type="cloud_run_revision"
  AND resource.labels.service_name="$(fn_name worker)"
  AND jsonPayload.logger="imgpipe.functions"
  AND jsonPayload.message:"/tasks/process"
  AND (jsonPayload.http_status>=300 OR jsonPayload.status="failed")
metricDescriptor:
  metricKind: DELTA
  valueType: INT64
  unit: "1"
  labels:
    - key: queue
      valueType: STRING
    - key: code
      valueType: STRING
labelExtractors:
  queue: EXTRACT(jsonPayload.queue)
  code: EXTRACT(jsonPayload.code)
YAML
for pair in "$DEAD_METRIC:$dead_cfg" "$FAILED_METRIC:$failed_cfg"; do
  name=${pair%%:*} cfg=${pair#*:}
  if lookup found "log-based metric $name" g logging metrics describe "$name" --format='value(name)'; then
    change "update log-based metric $name" g logging metrics update "$name" --config-from-file="$cfg"
  else
    change "create log-based metric $name" g logging metrics create "$name" --config-from-file="$cfg"
  fi
done

# Alert policies cost $1.50 a condition a month (three here): ALERTS=false leaves them out.
create_alert_policies() {
  channels=()
  if [ -n "${ALERT_EMAIL:-}" ]; then
    channel_filter="type=\"email\" AND labels.email_address=\"$ALERT_EMAIL\""
    channel=""
    lookup channel "notification channel for $ALERT_EMAIL" \
      g beta monitoring channels list --filter="$channel_filter" --format='value(name)' || true
    if [ -z "$channel" ]; then
      change "create the e-mail notification channel for $ALERT_EMAIL" \
        g beta monitoring channels create --display-name="imgpipe$SUFFIX alerts ($ALERT_EMAIL)" \
        --type=email --channel-labels="email_address=$ALERT_EMAIL"
      channel="(the new channel)"
      $DRY_RUN || lookup channel "notification channel for $ALERT_EMAIL" \
        g beta monitoring channels list --filter="$channel_filter" --format='value(name)' || true
      [ -n "$channel" ] || die "the notification channel for $ALERT_EMAIL was created but is not listed"
    fi
    channels=("${channel%%$'\n'*}")
  fi
  channel_yaml="notificationChannels: []"
  [ ${#channels[@]} -eq 0 ] || channel_yaml="notificationChannels: [\"${channels[0]}\"]"

  queues_filter="(resource.label.queue_id=\"$QUEUE_HIGH\" OR resource.label.queue_id=\"$QUEUE\")"
  dead_policy=$WORK/policy-dead-letters.yaml
  cat >"$dead_policy" <<YAML
displayName: "imgpipe$SUFFIX: dead letters"
documentation:
  mimeType: text/markdown
  content: >-
    An image failed every attempt and has a dead letter. See it with GET /failed on
    $(fn_name status) and retry with POST /failed/retry once the cause is fixed.
combiner: OR
conditions:
  - displayName: a dead letter was recorded
    conditionThreshold:
      filter: >-
        metric.type="logging.googleapis.com/user/$DEAD_METRIC"
        AND resource.type="cloud_run_revision"
      aggregations:
        - alignmentPeriod: 300s
          perSeriesAligner: ALIGN_SUM
          crossSeriesReducer: REDUCE_SUM
      comparison: COMPARISON_GT
      thresholdValue: 0
      duration: 0s
      trigger:
        count: 1
alertStrategy:
  autoClose: 86400s
$channel_yaml
YAML
  backlog_policy=$WORK/policy-backlog.yaml
  cat >"$backlog_policy" <<YAML
displayName: "imgpipe$SUFFIX: queue backlog"
documentation:
  mimeType: text/markdown
  content: >-
    Tasks are piling up in $QUEUE_HIGH or $QUEUE, or start long after they were due (Cloud
    Monitoring has no oldest-task-age metric: the attempt delay is its nearest measure). Check
    GET /status on $(fn_name status), the worker's errors and its max instances.
combiner: OR
conditions:
  - displayName: more than $BACKLOG_DEPTH tasks queued for 15 minutes
    conditionThreshold:
      filter: >-
        metric.type="cloudtasks.googleapis.com/queue/depth"
        AND resource.type="cloud_tasks_queue" AND $queues_filter
      aggregations:
        - alignmentPeriod: 300s
          perSeriesAligner: ALIGN_MEAN
      comparison: COMPARISON_GT
      thresholdValue: $BACKLOG_DEPTH
      duration: 900s
  - displayName: tasks start more than $BACKLOG_DELAY s after they were due
    conditionThreshold:
      filter: >-
        metric.type="cloudtasks.googleapis.com/queue/task_attempt_delays"
        AND resource.type="cloud_tasks_queue" AND $queues_filter
      aggregations:
        - alignmentPeriod: 300s
          perSeriesAligner: ALIGN_PERCENTILE_99
      comparison: COMPARISON_GT
      thresholdValue: $((BACKLOG_DELAY * 1000))
      duration: 600s
alertStrategy:
  autoClose: 86400s
$channel_yaml
YAML
  for pair in "imgpipe$SUFFIX: dead letters|$dead_policy" "imgpipe$SUFFIX: queue backlog|$backlog_policy"; do
    display=${pair%%|*} file=${pair#*|}
    existing=""
    lookup existing "alert policy '$display'" g alpha monitoring policies list \
      --filter="displayName=\"$display\"" --format='value(name)' || true
    if [ -n "$existing" ]; then
      change "update alert policy '$display'" g alpha monitoring policies update \
        "${existing%%$'\n'*}" --policy-from-file="$file"
    else
      # A just-created log-based metric takes a moment to be known to Monitoring.
      eventual "create alert policy '$display'" g alpha monitoring policies create \
        --policy-from-file="$file"
    fi
  done
}
if [ "${ALERTS:-true}" = true ]; then
  create_alert_policies
else
  note "ALERTS=false: no alert policies (the log-based metrics are there for your own)"
fi

step "Done"
if $DRY_RUN; then
  note "dry run: nothing was changed"
else
  note "setup of $PROJECT${ENV_NAME:+ (environment $ENV_NAME)} is complete"
  note "next: PROJECT=$PROJECT bash scripts/deploy.sh${ENV_NAME:+ --env $ENV_NAME}"
fi
