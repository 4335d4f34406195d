"""scripts/setup.sh and scripts/deploy.sh against the stateful fake gcloud: a first deployment
in an empty project, a second run of both (which must create nothing), --env, --dry-run,
preflight, injected failures (each must stop the script naming what failed) and transient
ones (retried)."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
from scriptsenv import PROJECT, ROOT, Call, Fake, Journey, Result

P = PROJECT
SA = f"@{P}.iam.gserviceaccount.com"
RUNTIME = f"serviceAccount:imgpipe-runtime{SA}"
TASKS = f"serviceAccount:imgpipe-tasks{SA}"
BUILD = f"serviceAccount:imgpipe-build{SA}"
TRIGGER = f"serviceAccount:imgpipe-trigger{SA}"
DEPLOYER = f"serviceAccount:imgpipe-deployer{SA}"
GCS_AGENT = "serviceAccount:service-123456789012@gs-project-accounts.iam.gserviceaccount.com"
FUNCTIONS = ("upload", "ingest", "enqueue", "worker", "failure", "status", "sweeper")
REGION = "us-central1"

# Every binding a first deployment needs, on the resource that takes it (no broader).
EXPECTED_BINDINGS = {
    f"project:{P}": {
        ("roles/datastore.user", RUNTIME),
        ("roles/logging.logWriter", RUNTIME),
        ("roles/cloudbuild.builds.builder", BUILD),
        ("roles/eventarc.eventReceiver", TRIGGER),
        ("roles/pubsub.publisher", GCS_AGENT),
        ("roles/cloudbuild.builds.builder", DEPLOYER),
        ("roles/cloudfunctions.developer", DEPLOYER),
        ("roles/run.admin", DEPLOYER),
        ("roles/cloudscheduler.admin", DEPLOYER),
        ("roles/serviceusage.serviceUsageConsumer", DEPLOYER),  # deploy.sh's preflight
    },
    f"sa:imgpipe-tasks{SA}": {
        ("roles/iam.serviceAccountUser", RUNTIME),
        ("roles/iam.serviceAccountUser", DEPLOYER),
    },
    f"sa:imgpipe-runtime{SA}": {
        ("roles/iam.serviceAccountTokenCreator", RUNTIME),
        ("roles/iam.serviceAccountUser", DEPLOYER),
    },
    f"sa:imgpipe-build{SA}": {("roles/iam.serviceAccountUser", DEPLOYER)},
    f"sa:imgpipe-trigger{SA}": {("roles/iam.serviceAccountUser", DEPLOYER)},
    f"bucket:{P}-imgpipe": {
        ("roles/storage.objectAdmin", RUNTIME),
        ("roles/storage.legacyObjectReader", "allUsers"),
    },
    f"bucket:{P}-imgpipe-originals": {("roles/storage.objectAdmin", RUNTIME)},
    f"bucket:{P}-imgpipe-uploads": {("roles/storage.objectAdmin", RUNTIME)},
    "secret:imgpipe-api-token": {
        ("roles/secretmanager.secretAccessor", RUNTIME),
        ("roles/secretmanager.viewer", DEPLOYER),
    },
    f"queue:{REGION}/high": {
        ("roles/cloudtasks.enqueuer", RUNTIME),
        ("roles/cloudtasks.viewer", RUNTIME),
        ("roles/cloudtasks.queueAdmin", RUNTIME),
    },
    f"queue:{REGION}/normal": {
        ("roles/cloudtasks.enqueuer", RUNTIME),
        ("roles/cloudtasks.viewer", RUNTIME),
        ("roles/cloudtasks.queueAdmin", RUNTIME),
    },
    **{
        f"run:{REGION}/imgpipe-{fn}": {("roles/run.invoker", TASKS)}
        for fn in ("worker", "failure", "sweeper")
    },
    f"run:{REGION}/imgpipe-ingest": {("roles/run.invoker", TRIGGER)},
    **{
        f"run:{REGION}/imgpipe-{fn}": {("roles/run.invoker", "allUsers")}
        for fn in ("upload", "enqueue", "status")
    },
}


def bindings(state: dict) -> dict[str, set[tuple[str, str]]]:
    return {
        key: {(role, m) for role, members in roles.items() for m in members}
        for key, roles in state["policies"].items()
        if any(roles.values())
    }


def first(calls: list[Call], *words: str, containing: str = "") -> int:
    for i, call in enumerate(calls):
        if call.has(*words) and containing in call.line:
            return i
    raise AssertionError(f"no call {' '.join(words)} {containing}")


def creates(calls: list[Call]) -> list[str]:
    verbs = ("create", "enable", "add-iam-policy-binding", "remove-iam-policy-binding", "mv")
    return [c.line for c in calls if not c.read_only and any(v in c.words for v in verbs)]


@pytest.fixture(scope="module")
def set_up(tmp_path_factory: pytest.TempPathFactory, fake_bin: Path) -> dict:
    """The state after one setup (deploy failures start from it)."""
    fake = Fake.create(tmp_path_factory.mktemp("set-up"), fake_bin)
    assert fake.run("setup.sh").rc == 0
    return fake.state()


fresh = itertools.count()


def fake_from(state: dict, tmp_path: Path, fake_bin: Path) -> Fake:
    fake = Fake.create(tmp_path / f"cloud{next(fresh)}", fake_bin)
    fake.write_state(state)
    return fake


# ---------------------------------------------------------------- a first deployment


def test_first_deployment_succeeds_without_a_failed_call(journey: Journey) -> None:
    for result in journey.all():
        # Look-ups of what does not exist yet answer NOT_FOUND; no change may fail.
        failed = [c.line for c in result.calls if c.rc and not c.read_only]
        assert failed == [], failed
    state = journey.fake.state()
    assert sorted(state["functions"]) == sorted(f"{REGION}/imgpipe-{fn}" for fn in FUNCTIONS)
    assert list(state["jobs"]) == [f"{REGION}/imgpipe-sweeper"]
    assert sorted(state["queues"]) == [f"{REGION}/high", f"{REGION}/normal"]
    assert sorted(state["buckets"]) == sorted(
        [f"{P}-imgpipe", f"{P}-imgpipe-originals", f"{P}-imgpipe-uploads"]
    )
    spec = json.loads((ROOT / "firestore.indexes.json").read_text())
    assert len(state["indexes"]["(default)"]) == len(spec["indexes"])
    assert len(state["fields"]["(default)"]) == len(spec["fieldOverrides"])
    assert set(state["metrics"]) == {"imgpipe-dead-letters", "imgpipe-failed-attempts"}
    assert sorted(p["displayName"] for p in state["alert_policies"]) == [
        "imgpipe: dead letters",
        "imgpipe: queue backlog",
    ]


def test_order_apis_first_accounts_before_bindings_function_before_its_job(
    journey: Journey,
) -> None:
    calls = journey.setup1.calls
    enable = first(calls, "services", "enable")
    touching_apis = [
        i
        for i, c in enumerate(calls)
        if c.words[0] not in ("auth", "config", "projects", "billing", "services")
    ]
    assert touching_apis and min(touching_apis) > enable
    enabled = calls[enable].words[2:]
    for api in ("iam", "cloudresourcemanager", "eventarc", "run", "cloudbuild", "artifactregistry",
                "pubsub", "secretmanager", "cloudscheduler", "firestore", "cloudtasks",
                "storage", "logging", "monitoring", "cloudfunctions"):  # fmt: skip
        assert f"{api}.googleapis.com" in enabled
    for account in ("runtime", "tasks", "build", "trigger", "deployer"):
        created = first(calls, "iam", "service-accounts", "create", containing=f"imgpipe-{account}")
        granted = [
            i
            for i, c in enumerate(calls)
            if "add-iam-policy-binding" in c.words and f"imgpipe-{account}@" in c.line
        ]
        assert granted and min(granted) > created, account
    assert first(calls, "firestore", "indexes", "composite", "create") > first(
        calls, "firestore", "databases", "create"
    )
    assert first(calls, "monitoring", "policies", "create") > first(
        calls, "logging", "metrics", "create"
    )
    deploy = journey.deploy1.calls
    sweeper = first(deploy, "functions", "deploy", containing="imgpipe-sweeper")
    job = first(deploy, "scheduler", "jobs", "create")
    assert job > sweeper
    assert first(deploy, "run", "services", "update", containing="imgpipe-worker") > first(
        deploy, "functions", "deploy", containing="imgpipe-worker"
    )


def test_every_role_is_granted_and_nothing_broader(journey: Journey) -> None:
    assert bindings(journey.fake.state()) == EXPECTED_BINDINGS


def test_originals_bucket_is_private_and_outputs_readable_not_listable(journey: Journey) -> None:
    state = journey.fake.state()
    buckets = state["buckets"]
    assert buckets[f"{P}-imgpipe-originals"]["public_access_prevention"] == "enforced"
    assert buckets[f"{P}-imgpipe-uploads"]["public_access_prevention"] == "enforced"
    for name in buckets:
        assert buckets[name]["uniform_bucket_level_access"], name
    outputs = state["policies"][f"bucket:{P}-imgpipe"]
    assert outputs.get("roles/storage.objectViewer", []) == []
    assert outputs["roles/storage.legacyObjectReader"] == ["allUsers"]


def test_second_runs_create_nothing(journey: Journey) -> None:
    assert creates(journey.setup2.calls) == []
    assert creates(journey.deploy2.calls) == []
    updates = [
        c.line for c in journey.deploy2.calls if c.has("scheduler", "jobs", "update", "http")
    ]
    assert len(updates) == 1  # converged, not created again
    assert not [c for c in journey.deploy2.calls if c.has("run", "services", "update")]
    assert not [
        c for c in journey.setup2.calls if c.has("firestore", "indexes", "fields", "update")
    ]


def test_seven_deploys_run_in_parallel_with_the_settings(journey: Journey) -> None:
    deploys = [c for c in journey.deploy1.calls if c.has("functions", "deploy")]
    assert sorted(c.words[2] for c in deploys) == sorted(f"imgpipe-{fn}" for fn in FUNCTIONS)
    assert max(c.start for c in deploys) < min(c.end for c in deploys), "the deploys overlapped"
    state = journey.fake.state()
    for fn in FUNCTIONS:
        function = state["functions"][f"{REGION}/imgpipe-{fn}"]
        assert function["entryPoint"] == fn
        env = dict(line.split(": ", 1) for line in function["env"].splitlines() if ": " in line)
        assert env["IMGPIPE_ORIGINALS_BUCKET"] == f'"{P}-imgpipe-originals"'
        assert env["IMGPIPE_BUCKET"] == f'"{P}-imgpipe"'
        assert env["IMGPIPE_TASK_AUTH"] == "oidc"
        assert env["IMGPIPE_WORKER_URL"].endswith('/imgpipe-worker/tasks/process"')
        assert function["requirements"].splitlines()[-1].endswith("manylinux_2_28_x86_64.whl")
    worker = next(c for c in deploys if c.words[2] == "imgpipe-worker")
    assert worker.flag("--build-service-account") == (
        f"projects/{P}/serviceAccounts/imgpipe-build{SA}"
    )
    assert worker.flag("--timeout") == "600s" and worker.flag("--concurrency") == "1"
    ingest = next(c for c in deploys if c.words[2] == "imgpipe-ingest")
    assert ingest.flag("--trigger-service-account") == f"imgpipe-trigger{SA}"


def test_operator_settings_reach_the_functions(
    set_up: dict, tmp_path: Path, fake_bin: Path
) -> None:
    fake = fake_from(set_up, tmp_path, fake_bin)
    result = fake.deploy(IMGPIPE_FORMATS="jpeg,webp,avif", IMGPIPE_MAX_PIXELS="50000000")
    assert result.rc == 0, result
    env = fake.state()["functions"][f"{REGION}/imgpipe-worker"]["env"]
    assert 'IMGPIPE_FORMATS: "jpeg,webp,avif"' in env
    assert 'IMGPIPE_MAX_PIXELS: "50000000"' in env
    assert "IMGPIPE_CROP" not in env  # unset stays unset: the function's own default


def test_scheduler_attempt_deadline_covers_the_sweeper_timeout(journey: Journey) -> None:
    deploys = journey.deploy1.calls
    sweeper = next(c for c in deploys if c.has("functions", "deploy", "imgpipe-sweeper"))
    job = next(c for c in deploys if c.has("scheduler", "jobs", "create", "http"))
    seconds = lambda value: int(str(value).rstrip("s"))  # noqa: E731
    assert seconds(job.flag("--attempt-deadline")) >= seconds(sweeper.flag("--timeout"))
    assert job.flag("--uri") == "https://imgpipe-sweeper-abcdefgh-uc.a.run.app/sweep"
    assert job.flag("--oidc-service-account-email") == f"imgpipe-tasks{SA}"
    assert job.flag("--oidc-token-audience") == "imgpipe-tasks"


def test_queue_flags_come_from_queueflags(journey: Journey) -> None:
    create = next(c for c in journey.setup1.calls if c.has("tasks", "queues", "create", "normal"))
    assert create.flag("--max-attempts") == "5"
    assert create.flag("--min-backoff") == "10s" and create.flag("--max-backoff") == "300s"
    assert create.flag("--max-doublings") == "4"


def test_temporary_files_are_private_and_removed(journey: Journey) -> None:
    paths = [
        c.flag(flag)
        for r in journey.all()
        for c in r.calls
        for flag in ("--cors-file", "--lifecycle-file", "--config-from-file", "--source")
        if c.flag(flag)
    ]
    assert paths
    tmp = journey.fake.tmp_dir
    for path in paths:
        assert path and path.startswith(f"{tmp}/imgpipe."), path  # mktemp -d, not /tmp/x.json
        assert not Path(path).exists(), path
    runs = {Path(p).parent for p in paths if "cors" in p}
    assert len(runs) == 2  # the two setup runs had a directory each
    assert list(tmp.iterdir()) == []


def test_the_api_token_secret_is_generated_once(journey: Journey) -> None:
    secret = journey.fake.state()["secrets"]["imgpipe-api-token"]
    assert len(secret["versions"]) == 1
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret["versions"][0])


# ---------------------------------------------------------------- --env


def test_env_suffixes_every_name_and_keeps_the_default_env(staging_journey: Journey) -> None:
    state = staging_journey.fake.state()
    assert sorted(state["functions"]) == sorted(
        [f"{REGION}/imgpipe-{fn}" for fn in FUNCTIONS]
        + [f"{REGION}/imgpipe-{fn}-staging" for fn in FUNCTIONS]
    )
    assert f"{REGION}/high-staging" in state["queues"] and f"{REGION}/high" in state["queues"]
    for name in ("imgpipe-staging", "imgpipe-staging-originals", "imgpipe-staging-uploads"):
        assert f"{P}-{name}" in state["buckets"]
    assert {"imgpipe-api-token", "imgpipe-api-token-staging"} <= set(state["secrets"])
    assert {"(default)", "imgpipe-staging"} <= set(state["databases"])
    assert f"imgpipe-runtime-staging{SA}" in state["sas"]
    assert f"{REGION}/imgpipe-sweeper-staging" in state["jobs"]
    assert "imgpipe-dead-letters-staging" in state["metrics"]
    staging = state["functions"][f"{REGION}/imgpipe-worker-staging"]
    assert 'IMGPIPE_QUEUE: "normal-staging"' in staging["env"]
    assert 'IMGPIPE_FIRESTORE_DATABASE: "imgpipe-staging"' in staging["env"]
    # The stand-in wheel has no settings.py: deploy.sh says what that would mean.
    assert "does not read IMGPIPE_FIRESTORE_DATABASE" in staging_journey.deploy1.stderr
    assert "/imgpipe-worker-staging/tasks/process" in staging["env"]
    # Every resource the staging runs created carries the suffix.
    for call in staging_journey.setup1.calls + staging_journey.deploy1.calls:
        if call.has("iam", "service-accounts", "create") or call.has("tasks", "queues", "create"):
            assert call.words[3].endswith("-staging"), call.line
        if call.has("functions", "deploy") or call.has("secrets", "create"):
            assert call.words[2].endswith("-staging"), call.line
        if call.has("storage", "buckets", "create"):
            assert "-staging" in call.words[3], call.line
    assert creates(staging_journey.setup2.calls) == []
    # The staging metric counts only staging's failure function.
    assert (
        'service_name="imgpipe-failure-staging"' in state["metrics"]["imgpipe-dead-letters-staging"]
    )


def test_alert_email_gets_one_channel_used_by_both_policies(staging_journey: Journey) -> None:
    state = staging_journey.fake.state()
    assert [c["labels"]["email_address"] for c in state["channels"]] == ["oncall@example.com"]
    channel = state["channels"][0]["name"]
    staging = [p for p in state["alert_policies"] if p["displayName"].startswith("imgpipe-staging")]
    assert len(staging) == 2
    for policy in staging:
        assert channel in policy["text"]
    backlog = next(p for p in staging if p["displayName"].endswith("queue backlog"))
    assert 'queue_id="high-staging"' in backlog["text"]
    assert 'queue_id="normal-staging"' in backlog["text"]
    default = [p for p in state["alert_policies"] if p["displayName"].startswith("imgpipe:")]
    assert len(default) == 2 and all(channel not in p["text"] for p in default)


def test_bad_env_name_is_refused(fake: Fake) -> None:
    result = fake.run("setup.sh", "--env", "Prod_1")
    assert result.rc == 1 and "--env 'Prod_1'" in result.stderr
    assert result.calls == []


# ---------------------------------------------------------------- --dry-run


def test_dry_run_on_an_empty_project_changes_nothing(fake: Fake) -> None:
    before = fake.state()
    result = fake.run("setup.sh", "--dry-run")
    assert result.rc == 0, result
    assert result.changes() == [], [c.line for c in result.changes()]
    after = fake.state()
    after.pop("seq"), before.pop("seq")
    assert after == before
    printed = [line for line in result.stderr.splitlines() if line.startswith("[dry-run] gcloud")]
    assert any("services enable" in line for line in printed)
    assert any("tasks queues create normal" in line for line in printed)
    assert any("storage.legacyObjectReader" in line for line in printed)
    assert "nothing was changed" in result.stderr
    # deploy.sh's preflight stops (setup has not run) before any change, naming the cause.
    deploy = fake.deploy("--dry-run")
    assert deploy.rc == 1 and "run scripts/setup.sh first" in deploy.stderr
    assert deploy.changes() == []


def test_dry_run_deploy_after_setup_prints_the_deploys(
    set_up: dict, tmp_path: Path, fake_bin: Path
) -> None:
    fake = fake_from(set_up, tmp_path, fake_bin)
    result = fake.run("deploy.sh", "--dry-run")  # no wheel: the build is only printed
    assert result.rc == 0, result
    assert result.changes() == []
    assert "[dry-run] bash scripts/lib/build_wheel.sh" in result.stderr
    for fn in FUNCTIONS:
        assert f"functions deploy imgpipe-{fn} " in result.stderr
    assert "scheduler jobs create http imgpipe-sweeper" in result.stderr


# ---------------------------------------------------------------- preflight


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"account": ""}, "no active gcloud account"),
        ({"project_exists": False}, f"project {P}"),
        ({"billing": False}, "billing is not enabled"),
    ],
)
def test_preflight_stops_before_any_change(fake: Fake, state: dict, message: str) -> None:
    fake.update_state(**state)
    for script in ("setup.sh", "deploy.sh"):
        result = fake.run(script)
        if script == "deploy.sh" and "billing" in message:
            continue  # deploy.sh does not look at billing; setup has not run: stopped anyway
        assert result.rc == 1, result
        assert message in result.stderr, result
        assert result.changes() == []


def test_no_permission_to_enable_services_is_named(fake: Fake) -> None:
    fake.fail(
        "services enable",
        times=None,
        message="ERROR: (gcloud.services.enable) PERMISSION_DENIED: Permission denied to enable "
        "service [iam.googleapis.com]",
    )
    result = fake.run("setup.sh")
    assert result.rc == 1
    assert (
        "FAILED: APIs: enable" in result.stderr and "serviceusage.services.enable" in result.stderr
    )
    assert [c.line for c in result.changes() if not c.injected] == []


def test_a_failing_queue_settings_helper_stops_setup(fake: Fake) -> None:
    result = fake.run("setup.sh", IMGPIPE_MAX_ATTEMPTS="five")
    assert result.rc == 1
    assert "queue settings helper failed" in result.stderr
    assert result.changes() == []


# ---------------------------------------------------------------- injected failures


PERMANENT = "ERROR: (gcloud) PERMISSION_DENIED: injected permanent failure (403)"


@pytest.mark.parametrize(
    ("match", "named"),
    [
        ("tasks queues create normal", "FAILED: Cloud Tasks queues: create queue normal"),
        ("--role=roles/datastore.user", "FAILED: IAM: project roles: grant roles/datastore.user"),
        (
            "storage buckets create gs://demo-proj-imgpipe-originals",
            "create bucket gs://demo-proj-imgpipe-originals",
        ),
        (
            "firestore indexes composite create",
            "FAILED: Firestore database (default) and its indexes: create index",
        ),
        (
            "logging metrics create imgpipe-dead-letters",
            "create log-based metric imgpipe-dead-letters",
        ),
    ],
)
def test_setup_failure_is_fatal_and_named(fake: Fake, match: str, named: str) -> None:
    fake.fail(match, times=None, message=PERMANENT)
    result = fake.run("setup.sh")
    assert result.rc == 1, result
    assert named in result.stderr, result
    assert "injected permanent failure" in result.stderr  # gcloud's own message, shown
    assert "Traceback" not in result.stderr
    failed = [c for c in result.calls if c.rc and not c.read_only]
    assert failed and all(match in c.line for c in failed)
    assert result.calls[-1].rc != 0 or result.calls[-1].injected  # it stopped right there


def test_one_failed_deploy_among_seven_fails_the_script(
    set_up: dict, tmp_path: Path, fake_bin: Path
) -> None:
    fake = fake_from(set_up, tmp_path, fake_bin)
    fake.fail("functions deploy imgpipe-worker ", times=None, message=PERMANENT)
    result = fake.deploy()
    assert result.rc == 1, result
    assert "FAILED: deploy of imgpipe-worker " in result.stderr
    assert "--- imgpipe-worker" in result.stderr  # its own output is shown
    functions = fake.state()["functions"]
    assert len(functions) == 6 and f"{REGION}/imgpipe-worker" not in functions
    assert not [c for c in result.calls if c.has("scheduler")], "stopped after the deploys"


def test_an_invoker_binding_failure_fails_deploy(
    set_up: dict, tmp_path: Path, fake_bin: Path
) -> None:
    fake = fake_from(set_up, tmp_path, fake_bin)
    fake.fail("run services add-iam-policy-binding imgpipe-ingest", times=None, message=PERMANENT)
    result = fake.deploy()
    assert result.rc == 1
    assert "grant roles/run.invoker to " + TRIGGER in result.stderr
    assert result.stderr.count("injected permanent failure") >= 1


# ---------------------------------------------------------------- retries


TRANSIENT = "ERROR: (gcloud) UNAVAILABLE: The service is currently unavailable (503)"
NOT_YET = (
    "ERROR: (gcloud.projects.add-iam-policy-binding) INVALID_ARGUMENT: Service account "
    f"imgpipe-runtime{SA} does not exist."
)


def tries(result: Result, match: str) -> list[int]:
    return [c.rc for c in result.calls if match in c.line]


def test_transient_failures_are_retried(fake: Fake) -> None:
    fake.fail("tasks queues create high", times=1, message=TRANSIENT)
    fake.fail("storage buckets create gs://demo-proj-imgpipe ", times=2, message=TRANSIENT)
    # IAM does not know a just-created account yet: not a 503, but eventually consistent.
    fake.fail("--role=roles/datastore.user", times=2, message=NOT_YET)
    fake.fail(
        "firestore indexes composite create", times=1, message="ERROR: ABORTED: Too much contention"
    )
    result = fake.run("setup.sh")
    assert result.rc == 0, result
    assert tries(result, "tasks queues create high") == [1, 0]
    assert tries(result, "storage buckets create gs://demo-proj-imgpipe ") == [1, 1, 0]
    assert tries(result, "--role=roles/datastore.user") == [1, 1, 0]
    assert "try 1 of 4 failed" in result.stderr


def test_a_retried_create_that_went_through_counts_as_done(
    set_up: dict, tmp_path: Path, fake_bin: Path
) -> None:
    fake = fake_from(set_up, tmp_path, fake_bin)
    # First try: a 503 although the job was created; the retry then meets ALREADY_EXISTS.
    fake.fail("scheduler jobs create", times=1, message=TRANSIENT, apply=True)
    result = fake.deploy()
    assert result.rc == 0, result
    assert tries(result, "scheduler jobs create") == [1, 1]
    assert list(fake.state()["jobs"]) == [f"{REGION}/imgpipe-sweeper"]


def test_non_transient_errors_are_not_retried(fake: Fake) -> None:
    fake.fail("tasks queues create high", times=1, message=PERMANENT)
    result = fake.run("setup.sh")
    assert result.rc == 1 and tries(result, "tasks queues create high") == [1]


def test_retries_end_naming_what_never_became_consistent(fake: Fake) -> None:
    fake.fail("--role=roles/run.admin", times=None, message=NOT_YET)
    result = fake.run("setup.sh")
    assert result.rc == 1
    assert tries(result, "--role=roles/run.admin") == [1, 1, 1, 1]  # IMGPIPE_RETRIES=4
    assert "FAILED: IAM: project roles: grant roles/run.admin" in result.stderr


def test_a_failed_lookup_is_not_taken_for_missing(
    set_up: dict, tmp_path: Path, fake_bin: Path
) -> None:
    fake = fake_from(set_up, tmp_path, fake_bin)
    fake.fail("tasks queues describe normal", times=None, message=PERMANENT)
    result = fake.run("setup.sh")
    assert result.rc == 1
    assert "FAILED: Cloud Tasks queues: queue normal" in result.stderr
    assert not [c for c in result.calls if c.has("tasks", "queues", "create")]


# ---------------------------------------------------------------- upgrading an old deployment


def test_setup_converges_an_earlier_release(set_up: dict, tmp_path: Path, fake_bin: Path) -> None:
    fake = fake_from(set_up, tmp_path, fake_bin)
    state = fake.state()
    outputs = state["policies"][f"bucket:{P}-imgpipe"]
    outputs["roles/storage.objectViewer"] = ["allUsers"]
    state["policies"][f"project:{P}"]["roles/run.invoker"] = [TASKS]
    state["policies"][f"project:{P}"]["roles/cloudtasks.enqueuer"] = [RUNTIME]
    state["objects"] = [
        f"{P}-imgpipe/originals/0123abcd",
        f"{P}-imgpipe/processed/0123abcd/w320.jpg",
    ]
    fake.write_state(state)
    refused = fake.run("setup.sh")
    assert refused.rc == 1
    assert "MOVE_ORIGINALS=true" in refused.stderr
    moved = fake.run("setup.sh", MOVE_ORIGINALS="true")
    assert moved.rc == 0, moved
    state = fake.state()
    assert state["objects"] == [
        f"{P}-imgpipe/processed/0123abcd/w320.jpg",
        f"{P}-imgpipe-originals/originals/0123abcd",
    ]
    assert bindings(state) == {
        k: v for k, v in EXPECTED_BINDINGS.items() if not k.startswith("run:")
    }
    assert "broader than imgpipe needs" in refused.stderr


def test_private_renditions_remove_the_public_binding(
    set_up: dict, tmp_path: Path, fake_bin: Path
) -> None:
    fake = fake_from(set_up, tmp_path, fake_bin)
    result = fake.run("setup.sh", PUBLIC_RENDITIONS="false")
    assert result.rc == 0
    assert "allUsers" not in str(fake.state()["policies"][f"bucket:{P}-imgpipe"])


def test_alerts_false_leaves_out_the_policies_only(
    set_up: dict, tmp_path: Path, fake_bin: Path
) -> None:
    state = dict(set_up, alert_policies=[])
    fake = fake_from(state, tmp_path, fake_bin)
    result = fake.run("setup.sh", ALERTS="false")
    assert result.rc == 0, result
    assert fake.state()["alert_policies"] == []
    assert set(fake.state()["metrics"]) == {"imgpipe-dead-letters", "imgpipe-failed-attempts"}
    assert "ALERTS=false: no alert policies" in result.stderr


def test_events_get_their_topic_secret_and_settings(
    set_up: dict, tmp_path: Path, fake_bin: Path
) -> None:
    fake = fake_from(set_up, tmp_path, fake_bin)
    events = {
        "IMGPIPE_EVENTS_TOPIC": "imgpipe-events",
        "IMGPIPE_WEBHOOK_URL": "https://hooks.example.com/imgpipe",
        "IMGPIPE_WEBHOOK_SECRET": "s3cret-1",
    }
    refused = fake.deploy(IMGPIPE_WEBHOOK_URL=events["IMGPIPE_WEBHOOK_URL"])
    assert refused.rc == 1 and "needs the secret imgpipe-webhook-secret" in refused.stderr
    assert refused.changes() == []
    for result in (fake.run("setup.sh", **events), fake.deploy(**events)):
        assert result.rc == 0, result
    state = fake.state()
    assert state["topics"] == ["imgpipe-events"]
    assert state["policies"]["topic:imgpipe-events"] == {"roles/pubsub.publisher": [RUNTIME]}
    assert state["secrets"]["imgpipe-webhook-secret"]["versions"] == ["s3cret-1"]
    worker = state["functions"][f"{REGION}/imgpipe-worker"]
    assert 'IMGPIPE_WEBHOOK_URL: "https://hooks.example.com/imgpipe"' in worker["env"]
    assert 'IMGPIPE_EVENTS_TOPIC: "imgpipe-events"' in worker["env"]
    assert "s3cret" not in worker["env"]  # the secret is mounted, never an env value
    deploy = next(c for c in fake.calls() if c.has("functions", "deploy", "imgpipe-worker"))
    assert deploy.flag("--set-secrets") == (
        "IMGPIPE_API_TOKEN=imgpipe-api-token:latest,"
        "IMGPIPE_WEBHOOK_SECRET=imgpipe-webhook-secret:latest"
    )
    again = fake.run("setup.sh", **events)
    assert creates(again.calls) == [] and not [
        c for c in again.calls if c.has("secrets", "versions", "add")
    ]
    rotated = fake.run("setup.sh", **{**events, "IMGPIPE_WEBHOOK_SECRET": "s3cret-2"})
    assert rotated.rc == 0
    assert fake.state()["secrets"]["imgpipe-webhook-secret"]["versions"] == ["s3cret-1", "s3cret-2"]
    assert "s3cret" not in rotated.stderr  # never echoed


def test_no_database_warning_for_an_imgpipe_that_reads_the_setting(
    staging_journey: Journey, tmp_path: Path
) -> None:
    import zipfile  # noqa: PLC0415

    wheel = tmp_path / "imgpipe-0.1.0-cp311-abi3-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("imgpipe/settings.py", 'DATABASE = "IMGPIPE_FIRESTORE_DATABASE"\n')
    result = staging_journey.fake.run("deploy.sh", "--env", "staging", str(wheel))
    assert result.rc == 0, result
    assert "does not read IMGPIPE_FIRESTORE_DATABASE" not in result.stderr
