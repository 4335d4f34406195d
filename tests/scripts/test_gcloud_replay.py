"""Every command the scripts gave the fake gcloud, run through the REAL gcloud CLI installed
here, with an empty configuration directory and no account: each must get as far as "no active
account" (it parsed: every flag exists and every value has the right type), never stop at an
argument error. Identical command shapes run once; they run in parallel."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fakegcloud
import pytest
from scriptsenv import NO_ACCOUNT, Call, Fake, Journey, replay

ARGUMENT_ERRORS = (
    "unrecognized arguments",
    "Invalid choice",
    "argument ",
    "Invalid value",
    "is not a valid",
    "must be specified",
    "Expected",
    "Bad syntax",
)
LOCAL_ONLY = {("auth", "list"), ("config", "get-value")}  # answer without an account
# Values that change nothing in how gcloud parses a command (names, identities, free text;
# --format is only applied to an answer): one shape for all of them.
ANY_VALUE = {
    "--member",
    "--role",
    "--display-name",
    "--filter",
    "--format",
    "--database",
    "--collection-group",
    "--field-config",
    "--service-account",
    "--build-service-account",
    "--trigger-service-account",
    "--oidc-service-account-email",
    "--oidc-token-audience",
    "--add-custom-audiences",
    "--uri",
    "--secret",
    "--set-secrets",
    "--channel-labels",
    *fakegcloud.FILE_FLAGS,
}


def shape(call: Call) -> tuple[object, ...]:
    argv = [token.replace("-staging", "") for token in call.argv]  # --env NAME: same shapes
    args = fakegcloud.parse(argv)
    flags = []
    for token in argv:
        name, eq, value = token.partition("=")
        if name.startswith("--"):
            flags.append((name, "*" if name in ANY_VALUE else value if eq else True))
    return (tuple(args.path), len(args.pos), tuple(sorted(flags, key=str)))


def with_snapshots(call: Call) -> list[str]:
    """The argv with the files it named replaced by the fake's copies (the originals were
    temporary)."""
    argv = list(call.argv)
    for index, copy in call.files.items():
        name = argv[int(index)].split("=", 1)[0]
        argv[int(index)] = f"{name}={copy}"
    return argv


def distinct(calls: Iterable[Call]) -> list[Call]:
    seen: dict[tuple[object, ...], Call] = {}
    for call in calls:
        seen.setdefault(shape(call), call)
    return list(seen.values())


@pytest.fixture(scope="module")
def recorded(journey: Journey, staging_journey: Journey, tmp_path_factory, fake_bin) -> list[Call]:
    """The journeys' calls, and those of the paths they do not take: an earlier release to
    converge, private renditions, no PROJECT, and verify.sh's look-ups."""
    calls = [c for j in (journey, staging_journey) for r in j.all() for c in r.calls]
    fake = Fake.create(tmp_path_factory.mktemp("replay-extra"), fake_bin)
    assert fake.run("setup.sh").rc == 0
    state = fake.state()
    project = state["project"]
    state["policies"][f"bucket:{project}-imgpipe"]["roles/storage.objectViewer"] = ["allUsers"]
    state["policies"][f"bucket:{project}-imgpipe-originals"]["roles/storage.objectViewer"] = [
        "allUsers"
    ]
    state["policies"][f"project:{project}"]["roles/run.invoker"] = [
        f"serviceAccount:imgpipe-tasks@{project}.iam.gserviceaccount.com"
    ]
    state["objects"] = [f"{project}-imgpipe/originals/0123abcd"]
    # verify.sh's requests then meet a closed port at once.
    state["function_uris"] = {f"imgpipe-{fn}": "http://127.0.0.1:9" for fn in ("upload", "status")}
    fake.write_state(state)
    events = {
        "IMGPIPE_EVENTS_TOPIC": "imgpipe-events",
        "IMGPIPE_WEBHOOK_URL": "https://hooks.example.com/imgpipe",
        "IMGPIPE_WEBHOOK_SECRET": "s3cret",
    }
    runs = [
        fake.run("setup.sh", MOVE_ORIGINALS="true", **events),
        fake.run("setup.sh", **{**events, "IMGPIPE_WEBHOOK_SECRET": "rotated"}),
        fake.run("setup.sh", PUBLIC_RENDITIONS="false"),
        fake.deploy(**events),
        fake.run("setup.sh", "--dry-run", PROJECT=""),
    ]
    assert [r.rc for r in runs] == [0, 0, 0, 0, 1], runs
    # verify.sh: its look-ups answer; the upload then cannot reach a run.app URL from here.
    verify = fake.run("verify.sh", IMGPIPE_API_TOKEN="", VERIFY_TIMEOUT="5")
    assert "==> Upload a sample" in verify.stderr, verify
    calls += [c for r in [*runs, verify] for c in r.calls]
    return calls


def test_every_recorded_command_parses_with_the_real_gcloud(recorded: list[Call]) -> None:
    representatives = distinct(recorded)
    paths = {tuple(fakegcloud.parse(c.argv).path) for c in representatives}
    # The journeys took every kind of command the scripts have.
    for expected in (
        ("services", "enable"),
        ("iam", "service-accounts", "create"),
        ("projects", "add-iam-policy-binding"),
        ("projects", "remove-iam-policy-binding"),
        ("storage", "buckets", "create"),
        ("storage", "buckets", "remove-iam-policy-binding"),
        ("storage", "mv"),
        ("storage", "objects", "list"),
        ("secrets", "create"),
        ("secrets", "versions", "access"),
        ("tasks", "queues", "create"),
        ("tasks", "queues", "update"),
        ("firestore", "indexes", "composite", "create"),
        ("firestore", "indexes", "fields", "update"),
        ("logging", "metrics", "create"),
        ("monitoring", "channels", "create"),
        ("monitoring", "policies", "update"),
        ("functions", "deploy"),
        ("run", "services", "update"),
        ("run", "services", "add-iam-policy-binding"),
        ("scheduler", "jobs", "create", "http"),
        ("scheduler", "jobs", "update", "http"),
        ("config", "get-value"),
        ("pubsub", "topics", "create"),
        ("pubsub", "topics", "add-iam-policy-binding"),
        ("secrets", "versions", "add"),
    ):
        assert expected in paths, expected
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(replay, (with_snapshots(c) for c in representatives)))
    problems = []
    for argv, rc, stderr in results:
        path = tuple(fakegcloud.parse(argv).path[:2])
        if any(marker in stderr for marker in ARGUMENT_ERRORS):
            problems.append(f"argument error: gcloud {' '.join(argv)}\n{stderr[-1500:]}")
        elif path in LOCAL_ONLY:
            if rc != 0:
                problems.append(f"rc {rc}: gcloud {' '.join(argv)}\n{stderr[-1500:]}")
        elif rc != 1 or NO_ACCOUNT not in stderr:
            problems.append(f"rc {rc}, not 'no account': gcloud {' '.join(argv)}\n{stderr[-1500:]}")
    assert not problems, f"{len(problems)} of {len(results)}:\n\n" + "\n\n".join(problems)
    assert len(results) >= 40


def test_the_replay_catches_a_misspelt_flag() -> None:
    _, rc, stderr = replay(["--project=p", "--quiet", "tasks", "queues", "create", "q",
                            "--location=us-central1", "--max-attempt=5"])  # fmt: skip
    assert rc == 2 and "unrecognized arguments" in stderr
    _, rc, stderr = replay(["--project=p", "--quiet", "tasks", "queues", "create", "q",
                            "--location=us-central1", "--max-attempts=five"])  # fmt: skip
    assert rc == 2 and "argument --max-attempts" in stderr


def test_readme_cloud_build_command_parses(tmp_path: Path) -> None:
    argv = [
        "--project=demo-proj",
        "--quiet",
        "builds",
        "submit",
        f"--config={Path(__file__).resolve().parents[2] / 'cloudbuild.yaml'}",
        "--no-source",
        "--service-account=projects/demo-proj/serviceAccounts/"
        "imgpipe-deployer@demo-proj.iam.gserviceaccount.com",
        "--substitutions=_REGION=europe-west1,_ENV=staging",
    ]
    _, rc, stderr = replay(argv)
    assert rc == 1 and NO_ACCOUNT in stderr, stderr
