#!/usr/bin/env bash
# Smoke test of a deployed imgpipe: uploads a sample photo (made unique, so it is really
# processed), waits for it to be done, fetches a rendition through its public URL without
# credentials, checks that its original is not publicly readable and that no bucket can be
# listed anonymously, then deletes the image again. Exit 0 only if every check passes.
#
#   PROJECT=my-proj [REGION=us-central1] bash scripts/verify.sh [--env NAME] [--keep]
#
# Finds the functions' URLs with `gcloud functions describe` and the API key in Secret Manager
# (or IMGPIPE_API_TOKEN). Settings: VERIFY_SAMPLE (default examples/baseline_mongolia.jpeg),
# VERIFY_TIMEOUT (300 s), STORAGE_ENDPOINT (https://storage.googleapis.com, the anonymous
# reader's view), BUCKET and ORIGINALS_BUCKET (as setup.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  echo "  --keep        leave the sample image in place (default: DELETE it at the end)"
  usage_common
}
keep=false
rest=()
for arg in "$@"; do
  if [ "$arg" = --keep ]; then keep=true; else rest+=("$arg"); fi
done
parse_common_args "${rest[@]}"
[ ${#ARGS[@]} -eq 0 ] || die "unexpected argument ${ARGS[0]} (see --help)"
$DRY_RUN && die "verify.sh changes nothing but its own sample image; it has no --dry-run"

SAMPLE=${VERIFY_SAMPLE:-$ROOT/examples/baseline_mongolia.jpeg}
TIMEOUT=${VERIFY_TIMEOUT:-300}
STORAGE=${STORAGE_ENDPOINT:-https://storage.googleapis.com}
STORAGE=${STORAGE%/}

step "Preflight"
command -v curl >/dev/null || die "preflight: curl is not installed"
preflight_account
resolve_names
[ -f "$SAMPLE" ] || die "preflight: no sample photo at $SAMPLE"
require_apis "run scripts/setup.sh and scripts/deploy.sh${ENV_NAME:+ --env $ENV_NAME} first" \
  cloudfunctions secretmanager storage

urls=()
for fn in upload status; do
  url=""
  lookup url "the URL of $(fn_name "$fn")" g functions describe "$(fn_name "$fn")" --gen2 \
    --region="$REGION" --format='value(serviceConfig.uri)' \
    || die "$(fn_name "$fn") is not deployed: run scripts/deploy.sh${ENV_NAME:+ --env $ENV_NAME}"
  [ -n "$url" ] || die "$(fn_name "$fn") has no URL yet (is its deploy finished?)"
  urls+=("${url%/}")
done
UPLOAD_URL=${urls[0]} STATUS_URL=${urls[1]}
TOKEN=${IMGPIPE_API_TOKEN:-}
if [ -z "$TOKEN" ]; then
  lookup TOKEN "the API token" g secrets versions access latest --secret="$SECRET" \
    || die "the secret $SECRET has no version: run scripts/setup.sh${ENV_NAME:+ --env $ENV_NAME}"
fi

PASSED=0
pass() {
  PASSED=$((PASSED + 1))
  printf '    ok: %s\n' "$*" >&2
}
fail() { die "verify: $*"; }

# http METHOD URL OUT [curl args...] -> prints the status code; the body goes to OUT.
http() {
  local method=$1 url=$2 out=$3
  shift 3
  curl -sS -o "$out" -w '%{http_code}' -X "$method" --max-time 60 "$@" "$url" || echo 000
}
key=(-H "X-API-Key: $TOKEN")

step "Bucket policies"
for b in "$ORIGINALS_BUCKET" "$UPLOAD_BUCKET"; do
  lookup found "bucket gs://$b" g storage buckets describe "gs://$b" --format='value(name)' \
    || fail "gs://$b does not exist: run scripts/setup.sh${ENV_NAME:+ --env $ENV_NAME}"
  public_bindings bucket "$b"
  [ -z "$PUBLIC" ] || fail "gs://$b (private) has public bindings: $(tr '\t\n' ': ' <<<"$PUBLIC")"
  pass "gs://$b has no public binding"
done
public_bindings bucket "$BUCKET"
if grep -qE '^roles/storage\.(objectViewer|legacyBucketReader|legacyBucketOwner|legacyBucketWriter|admin|objectAdmin)'$'\t' <<<"$PUBLIC"; then
  fail "gs://$BUCKET lets anyone list it: $(tr '\t\n' ': ' <<<"$PUBLIC")"
fi
pass "gs://$BUCKET is readable by URL at most, never listable"

step "Upload a sample"
helper unique-jpeg "$SAMPLE" "$WORK/verify.jpg"
code=$(http POST "$UPLOAD_URL/upload" "$WORK/upload.json" "${key[@]}" \
  -F "file=@$WORK/verify.jpg;type=image/jpeg")
case $code in
  200 | 202) ;;
  *) fail "POST $UPLOAD_URL/upload answered $code: $(head -c 500 "$WORK/upload.json")" ;;
esac
IMAGE_ID=$(helper get "$WORK/upload.json" image_id)
[ -n "$IMAGE_ID" ] || fail "the upload's answer has no image_id: $(head -c 500 "$WORK/upload.json")"
pass "uploaded as $IMAGE_ID ($code)"
cleanup_image() {
  if ! $keep && [ -n "${IMAGE_ID:-}" ]; then
    http DELETE "$STATUS_URL/images/$IMAGE_ID" /dev/null "${key[@]}" >/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup_image EXIT

step "Wait for done (at most ${TIMEOUT}s)"
deadline=$((SECONDS + TIMEOUT))
state=""
while :; do
  code=$(http GET "$STATUS_URL/images/$IMAGE_ID" "$WORK/image.json" "${key[@]}")
  if [ "$code" = 200 ]; then
    state=$(helper get "$WORK/image.json" status)
    case $state in
      done) break ;;
      failed) fail "$IMAGE_ID failed: $(helper get "$WORK/image.json" error)" ;;
    esac
  elif [ "$code" != 404 ]; then
    fail "GET $STATUS_URL/images/$IMAGE_ID answered $code: $(head -c 500 "$WORK/image.json")"
  fi
  [ "$SECONDS" -lt "$deadline" ] || fail "$IMAGE_ID is still '${state:-unknown}' after ${TIMEOUT}s"
  sleep 2
done
pass "$IMAGE_ID is done after $((SECONDS - deadline + TIMEOUT))s"

step "Fetch a rendition through its URL, without credentials"
rendition_url=$(helper get "$WORK/image.json" renditions.0.url)
rendition_bytes=$(helper get "$WORK/image.json" renditions.0.bytes)
[ -n "$rendition_url" ] || fail "$IMAGE_ID has no rendition URL: $(head -c 500 "$WORK/image.json")"
code=$(curl -sS -o "$WORK/rendition" -w '%{http_code} %{content_type}' --max-time 60 \
  "$rendition_url" || echo 000)
case $code in
  "200 image/"*) ;;
  *) fail "GET $rendition_url answered $code" ;;
esac
size=$(wc -c <"$WORK/rendition")
[ "$size" -eq "$rendition_bytes" ] \
  || fail "the rendition at $rendition_url has $size bytes, its record says $rendition_bytes"
pass "rendition $rendition_url: ${code#* }, $size bytes"

step "The original is not publicly readable"
for b in "$ORIGINALS_BUCKET" "$BUCKET"; do
  code=$(http GET "$STORAGE/$b/originals/$IMAGE_ID" /dev/null)
  case $code in
    401 | 403 | 404) pass "anonymous GET $STORAGE/$b/originals/$IMAGE_ID: $code" ;;
    200) fail "the original of $IMAGE_ID is public: $STORAGE/$b/originals/$IMAGE_ID answered 200" ;;
    *) fail "could not check $STORAGE/$b/originals/$IMAGE_ID: it answered $code" ;;
  esac
done
for b in "$BUCKET" "$ORIGINALS_BUCKET" "$UPLOAD_BUCKET"; do
  code=$(http GET "$STORAGE/storage/v1/b/$b/o?maxResults=1" /dev/null)
  case $code in
    401 | 403) pass "anonymous listing of gs://$b: $code" ;;
    200) fail "anyone can list gs://$b ($STORAGE/storage/v1/b/$b/o answered 200)" ;;
    *) fail "could not check the listing of gs://$b: it answered $code" ;;
  esac
done

step "Done"
if $keep; then
  note "kept $IMAGE_ID"
else
  code=$(http DELETE "$STATUS_URL/images/$IMAGE_ID" "$WORK/delete.json" "${key[@]}")
  case $code in
    200 | 202 | 204) pass "deleted $IMAGE_ID" ;;
    *) fail "DELETE $STATUS_URL/images/$IMAGE_ID answered $code: $(head -c 300 "$WORK/delete.json")" ;;
  esac
  IMAGE_ID=""
fi
note "verify: all $PASSED checks passed${ENV_NAME:+ (environment $ENV_NAME)}"
