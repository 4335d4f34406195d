# shellcheck shell=bash
# shellcheck disable=SC2034 # the names set here are used by the scripts that source this file
# Shared by scripts/setup.sh, scripts/deploy.sh and scripts/verify.sh (sourced, not run).
#
# Every gcloud call goes through one of three doors, so that --dry-run, the command echo, the
# retries and the error messages are the same everywhere:
#   lookup VAR WHAT CMD...   read-only; runs in --dry-run too. 0 = found (VAR = its stdout),
#                            1 = NOT_FOUND; any other failure stops the script naming WHAT.
#   change WHAT CMD...       changes something; only printed in --dry-run. Transient errors
#                            (503, 429, ABORTED, an API still being enabled) are retried.
#   eventual WHAT CMD...     like change, but every failure is retried with backoff: for what
#                            is eventually consistent (IAM on a new account, index contention).
# A step that fails prints "FAILED: <step>: <what>", the command and gcloud's own message, and
# the script exits 1.

DRY_RUN=false
ENV_NAME=""
SUFFIX=""
STEP="start"
RETRIES=${IMGPIPE_RETRIES:-8}         # tries in all, for transient and eventual failures
RETRY_DELAY=${IMGPIPE_RETRY_DELAY:-2} # seconds before the second try, doubled up to 60 s
ARGS=()

usage_common() {
  cat <<'TXT'
  --dry-run     print every command that would change something and run none of them
                (read-only look-ups still run, each printed as "+ (read-only) ...")
  --env NAME    one of several environments in the project (dev, staging, prod): every
                resource name gets the suffix -NAME and the environment its own secret
TXT
}

# parse_common_args "$@": sets DRY_RUN, ENV_NAME, SUFFIX; the other arguments go to ARGS.
parse_common_args() {
  ARGS=()
  while [ $# -gt 0 ]; do
    case $1 in
      --dry-run) DRY_RUN=true ;;
      --env)
        [ $# -ge 2 ] || die "--env needs a name"
        ENV_NAME=$2
        shift
        ;;
      --env=*) ENV_NAME=${1#--env=} ;;
      -h | --help)
        usage
        exit 0
        ;;
      --) shift; ARGS+=("$@"); break ;;
      -*) die "unknown option $1 (see --help)" ;;
      *) ARGS+=("$1") ;;
    esac
    shift
  done
  if [ -n "$ENV_NAME" ]; then
    # Service account ids are at most 30 characters: imgpipe-deployer- leaves 13.
    [[ $ENV_NAME =~ ^[a-z][a-z0-9]{0,11}$ ]] \
      || die "--env '$ENV_NAME': use 1-12 lower-case letters and digits, starting with a letter"
    SUFFIX="-$ENV_NAME"
  fi
}

die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}

step() {
  STEP=$*
  printf '\n==> %s\n' "$*" >&2
}

note() { printf '    %s\n' "$*" >&2; }

quoted() {  # the command line as it runs (g spelled out), quoted where needed
  local out="" arg
  if [ "${1:-}" = g ]; then
    shift
    set -- gcloud --project="$PROJECT" --quiet "$@"
  fi
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then out+=" $arg"; else out+=" $(printf '%q' "$arg")"; fi
  done
  printf '%s' "${out# }"
}

# The project's gcloud: every call names the project and never prompts.
g() { gcloud --project="$PROJECT" --quiet "$@"; }

_transient() {
  grep -qiE 'UNAVAILABLE|DEADLINE_EXCEEDED|RESOURCE_EXHAUSTED|ABORTED|INTERNAL|\b(429|500|502|503|504)\b|concurrent (policy )?changes|try again|temporar|timed? ?out|connection (reset|aborted|refused)|unable to queue the operation|SERVICE_DISABLED|has not been used in project' "$1"
}

_not_found() {
  ! grep -qiE 'PERMISSION_DENIED|\b403\b|denied|SERVICE_DISABLED' "$1" \
    && grep -qiE 'NOT_FOUND|not found|does not exist|\b404\b|matched no objects' "$1"
}

_failed() {  # _failed WHAT ERRFILE CMD...
  local what=$1 err=$2
  shift 2
  {
    printf '\nFAILED: %s: %s\n' "$STEP" "$what"
    printf '  command: %s\n' "$(quoted "$@")"
    sed 's/^/  | /' "$err"
  } >&2
  exit 1
}

# _run MODE WHAT CMD...: MODE lookup | change | eventual. stdout is the command's.
_run() {
  local mode=$1 what=$2
  shift 2
  local err=$WORK/$BASHPID.stderr tries=1 delay=$RETRY_DELAY
  while :; do
    if "$@" 2>"$err"; then
      case $mode in lookup | probe) ;; *) cat "$err" >&2 ;; esac
      return 0
    fi
    if [ "$mode" != change ] && [ "$mode" != eventual ] && _not_found "$err"; then
      return 1
    fi
    # A retried create whose earlier try went through after all.
    if [ "$tries" -gt 1 ] && { [ "$mode" = change ] || [ "$mode" = eventual ]; } && grep -qiE 'ALREADY_EXISTS|already exists' "$err"; then
      return 0
    fi
    if [ "$tries" -ge "$RETRIES" ] || { [ "$mode" != eventual ] && ! _transient "$err"; }; then
      if [ "$mode" = probe ]; then
        note "could not look up $what: $(head -c 300 "$err" | tr '\n' ' ')"
        return 2
      fi
      _failed "$what" "$err" "$@"
    fi
    note "$(head -c 300 "$err" | tr '\n' ' ')"
    note "try $tries of $RETRIES failed: again in ${delay}s ($what)"
    sleep "$delay"
    tries=$((tries + 1))
    delay=$((delay * 2 > 60 ? 60 : delay * 2))
  done
}

# APIs that setup.sh would enable first: in --dry-run they are still disabled, so a look-up
# through them cannot answer; it counts as "does not exist" instead.
PENDING_APIS=" "
_api_of() {  # the API a gcloud command line talks to ("" when none is known)
  local arg
  for arg in "$@"; do
    case $arg in
      g | gcloud | alpha | beta | -*) continue ;;
      iam) echo iam.googleapis.com ;;
      storage) echo storage.googleapis.com ;;
      secrets) echo secretmanager.googleapis.com ;;
      tasks) echo cloudtasks.googleapis.com ;;
      firestore) echo firestore.googleapis.com ;;
      logging) echo logging.googleapis.com ;;
      monitoring) echo monitoring.googleapis.com ;;
      functions) echo cloudfunctions.googleapis.com ;;
      run) echo run.googleapis.com ;;
      scheduler) echo cloudscheduler.googleapis.com ;;
      pubsub) echo pubsub.googleapis.com ;;
    esac
    return 0
  done
}

lookup() {  # lookup VAR WHAT CMD...
  _lookup lookup "$@"
}

# probe VAR WHAT CMD...: a look-up whose failure is not fatal: 0 found, 1 not found, 2 failed.
probe() {
  _lookup probe "$@"
}

_lookup() {
  local __mode=$1 __var=$2 __what=$3 __out __rc=0 __api
  shift 3
  __api=$(_api_of "$@")
  if $DRY_RUN && [ -n "$__api" ] && [[ $PENDING_APIS == *" $__api "* ]]; then
    printf '[dry-run] (%s is not enabled yet: %s counts as missing)\n' "$__api" "$__what" >&2
    printf -v "$__var" '%s' ""
    return 1
  fi
  printf '+ (read-only) %s\n' "$(quoted "$@")" >&2
  __out=$WORK/$BASHPID.stdout
  _run "$__mode" "$__what" "$@" >"$__out" || __rc=$?
  printf -v "$__var" '%s' "$(<"$__out")"
  return "$__rc"
}

_mutate() {  # _mutate MODE WHAT CMD...: echoed, or only printed under --dry-run
  local mode=$1 what=$2
  shift 2
  if $DRY_RUN; then
    printf '[dry-run] %s\n' "$(quoted "$@")" >&2
    return 0
  fi
  printf '+ %s\n' "$(quoted "$@")" >&2
  _run "$mode" "$what" "$@" >&2
}

change() { _mutate change "$@"; }      # change WHAT CMD...
eventual() { _mutate eventual "$@"; }  # eventual WHAT CMD... (retried on any error)

# ---------------------------------------------------------------- IAM policies
# ensure_bindings KIND RESOURCE ROLE MEMBER [ROLE MEMBER ...]: reads the policy once and adds
# what it lacks (eventual: a just-created account may not be visible to IAM yet).
# revoke_bindings KIND RESOURCE ROLE MEMBER ...: removes those of the pairs that are present.
# public_bindings KIND RESOURCE: PUBLIC = its "ROLE<TAB>MEMBER" lines of allUsers and
# allAuthenticatedUsers.
# KIND: project | sa | bucket | secret | queue | run | topic.
_policy_cmd() {  # _policy_cmd KIND RESOURCE VERB -> POLICY_CMD array
  local kind=$1 res=$2 verb=$3
  case $kind in
    project) POLICY_CMD=(g projects "$verb" "$res") ;;
    sa) POLICY_CMD=(g iam service-accounts "$verb" "$res") ;;
    bucket) POLICY_CMD=(g storage buckets "$verb" "gs://$res") ;;
    secret) POLICY_CMD=(g secrets "$verb" "$res") ;;
    queue) POLICY_CMD=(g tasks queues "$verb" "$res" --location="$REGION") ;;
    run) POLICY_CMD=(g run services "$verb" "$res" --region="$REGION") ;;
    topic) POLICY_CMD=(g pubsub topics "$verb" "$res") ;;
    *) die "unknown policy kind $kind" ;;
  esac
}

# _read_policy KIND RESOURCE: POLICY = its bindings, one "ROLE<TAB>MEMBER" a line ("" when the
# resource does not exist yet, as in --dry-run).
_read_policy() {
  _policy_cmd "$1" "$2" get-iam-policy
  lookup POLICY "IAM policy of $1 $2" "${POLICY_CMD[@]}" \
    --flatten='bindings[].members' --format='value(bindings.role,bindings.members)' || POLICY=""
}

_has_binding() { grep -qxF "$1"$'\t'"$2" <<<"$POLICY"; }

ensure_bindings() {
  local kind=$1 res=$2 extra=()
  shift 2
  [ "$kind" = project ] && extra=(--condition=None)
  _read_policy "$kind" "$res"
  while [ $# -ge 2 ]; do
    if ! _has_binding "$1" "$2"; then
      _policy_cmd "$kind" "$res" add-iam-policy-binding
      eventual "grant $1 to $2 on $kind $res" \
        "${POLICY_CMD[@]}" --member="$2" --role="$1" "${extra[@]}" --format=none
    fi
    shift 2
  done
}

revoke_bindings() {
  local kind=$1 res=$2 extra=()
  shift 2
  [ "$kind" = project ] && extra=(--condition=None)
  _read_policy "$kind" "$res"
  while [ $# -ge 2 ]; do
    if _has_binding "$1" "$2"; then
      note "$2 has $1 on $kind $res: broader than imgpipe needs, removing it"
      _policy_cmd "$kind" "$res" remove-iam-policy-binding
      eventual "revoke $1 from $2 on $kind $res" \
        "${POLICY_CMD[@]}" --member="$2" --role="$1" "${extra[@]}" --format=none
    fi
    shift 2
  done
}

public_bindings() {  # sets PUBLIC
  _read_policy "$1" "$2"
  PUBLIC=$(grep -E $'\t''(allUsers|allAuthenticatedUsers)$' <<<"$POLICY" || true)
}

# Temporary files of this run live in one private directory (mktemp: two operators, or two
# environments, on one machine never share a file); removed on exit.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgpipe.XXXXXXXX")
trap 'rm -rf "$WORK"' EXIT
WORK_N=0
work_file() {  # work_file NAME -> a fresh path under $WORK (in $WORK_FILE)
  WORK_N=$((WORK_N + 1))
  WORK_FILE=$WORK/$BASHPID-$WORK_N-$1  # background jobs count on their own
}

# The Python helpers (policy and index arithmetic) need only the standard library.
PYTHON=${PYTHON:-python3}
helper() { "$PYTHON" -S "$ROOT/scripts/lib/gcphelp.py" "$@"; }

# preflight_account: gcloud installed, an active account, a project that exists.
# Sets PROJECT (from $PROJECT or gcloud's config) and PROJECT_NUMBER.
preflight_account() {
  command -v gcloud >/dev/null \
    || die "preflight: gcloud is not installed (https://cloud.google.com/sdk/docs/install)"
  command -v "$PYTHON" >/dev/null || die "preflight: $PYTHON is not installed (Python >= 3.11)"
  local account
  lookup account "the active gcloud account" \
    gcloud auth list --filter=status:ACTIVE --format='value(account)' || true
  [ -n "$account" ] || die "preflight: no active gcloud account: run 'gcloud auth login' (or activate a service account)"
  note "account: $account"
  if [ -z "${PROJECT:-}" ]; then
    lookup PROJECT "the configured project" gcloud config get-value project || true
  fi
  [ -n "${PROJECT:-}" ] || die "preflight: no project: set PROJECT=my-project (or 'gcloud config set project')"
  if ! lookup PROJECT_NUMBER "project $PROJECT" \
    gcloud projects describe "$PROJECT" --format='value(projectNumber)'; then
    die "preflight: project '$PROJECT' does not exist or $account cannot see it"
  fi
  note "project: $PROJECT (number $PROJECT_NUMBER)"
}

# resolve_names: every resource name, from PROJECT, REGION and --env (one place for all three
# scripts). Without --env the names are those of earlier imgpipe releases.
resolve_names() {
  REGION=${REGION:-us-central1}
  BUCKET=${BUCKET:-$PROJECT-imgpipe$SUFFIX}                        # outputs (public renditions)
  ORIGINALS_BUCKET=${ORIGINALS_BUCKET:-$PROJECT-imgpipe$SUFFIX-originals}  # private
  UPLOAD_BUCKET=${UPLOAD_BUCKET:-$PROJECT-imgpipe$SUFFIX-uploads}  # finalize trigger source
  QUEUE_HIGH=${QUEUE_HIGH:-high$SUFFIX}
  QUEUE=${QUEUE:-normal$SUFFIX}
  MAX_ATTEMPTS=${IMGPIPE_MAX_ATTEMPTS:-5}
  SECRET=imgpipe-api-token$SUFFIX
  WEBHOOK_SECRET=imgpipe-webhook-secret$SUFFIX  # IMGPIPE_WEBHOOK_SECRET, when events go to a webhook
  EVENTS_TOPIC=${IMGPIPE_EVENTS_TOPIC:-}        # Pub/Sub topic for events: T or projects/P/topics/T
  AUDIENCE=${IMGPIPE_OIDC_AUDIENCE:-imgpipe-tasks$SUFFIX}
  if [ -n "$SUFFIX" ]; then FIRESTORE_DB=imgpipe$SUFFIX; else FIRESTORE_DB='(default)'; fi
  local domain=$PROJECT.iam.gserviceaccount.com
  RUNTIME_SA=imgpipe-runtime$SUFFIX@$domain    # what the seven functions run as
  TASKS_SA=imgpipe-tasks$SUFFIX@$domain        # OIDC identity of tasks and of the scheduler
  BUILD_SA=imgpipe-build$SUFFIX@$domain        # the functions' container builds
  TRIGGER_SA=imgpipe-trigger$SUFFIX@$domain    # Eventarc's deliveries to ingest
  DEPLOYER_SA=imgpipe-deployer$SUFFIX@$domain  # cloudbuild.yaml's build runs as it
  SCHEDULER_JOB=imgpipe-sweeper$SUFFIX
  SWEEPER_TIMEOUT=300                          # s; the scheduler's attempt deadline exceeds it
  FUNCTIONS=(upload ingest enqueue worker failure status sweeper)
  BASE=https://$REGION-$PROJECT.cloudfunctions.net
}

fn_name() { printf 'imgpipe-%s%s' "$1" "$SUFFIX"; }

# require_apis HINT API...: stops naming the first API of the list that is not enabled.
require_apis() {
  local hint=$1 enabled="" api
  shift
  lookup enabled "the enabled APIs" g services list --enabled --format='value(config.name)' || true
  for api in "$@"; do
    grep -qx "$api.googleapis.com" <<<"$enabled" \
      || die "preflight: $api.googleapis.com is not enabled in $PROJECT: $hint"
  done
}
