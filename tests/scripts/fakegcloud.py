"""A stateful fake `gcloud` for the tests of scripts/setup.sh, deploy.sh and verify.sh: the
cloud's test double, first on PATH. It records every call (argv, exit code, times, snapshots of
the files it was given), remembers what was created, answers describes, lists and IAM policies
from that memory, and enforces what the real services would: an API must be enabled before it
is used, a create of something that exists is ALREADY_EXISTS, a binding for an account that
does not exist is INVALID_ARGUMENT, a function needs its accounts and its secret, an alert
policy needs its log-based metric. Faults are injected by rules (see `Fault`).

State lives in one directory (FAKE_GCLOUD_DIR): state.json, calls.jsonl, faults.json, files/.
`handle` serves one call; scriptsenv.FakeServer runs it for a bash launcher (a gcloud start-up
costs a few milliseconds instead of a Python start), `main` is the same as a command."""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

PROJECT = "demo-proj"
NUMBER = "123456789012"
ACCOUNT = "operator@example.com"

# Command group -> the API it needs (what setup.sh must enable before using it).
API_OF = {
    "iam": "iam.googleapis.com",
    "storage": "storage.googleapis.com",
    "secrets": "secretmanager.googleapis.com",
    "tasks": "cloudtasks.googleapis.com",
    "firestore": "firestore.googleapis.com",
    "logging": "logging.googleapis.com",
    "monitoring": "monitoring.googleapis.com",
    "functions": "cloudfunctions.googleapis.com",
    "run": "run.googleapis.com",
    "scheduler": "cloudscheduler.googleapis.com",
    "pubsub": "pubsub.googleapis.com",
}
# A new project: only these are on.
DEFAULT_ENABLED = ["serviceusage.googleapis.com"]
FILE_FLAGS = (
    "--source",
    "--env-vars-file",
    "--cors-file",
    "--lifecycle-file",
    "--data-file",
    "--config-from-file",
    "--policy-from-file",
)


def initial_state(**overrides: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "project": PROJECT,
        "number": NUMBER,
        "project_exists": True,
        "billing": True,
        "account": ACCOUNT,
        "enabled": list(DEFAULT_ENABLED),
        "sas": {},
        "policies": {},
        "buckets": {},
        "objects": [],
        "secrets": {},
        "queues": {},
        "databases": {},
        "indexes": {},
        "fields": {},
        "metrics": {},
        "channels": [],
        "alert_policies": [],
        "functions": {},
        "services": {},
        "jobs": {},
        "function_uris": {},
        "seq": 0,
    }
    state.update(overrides)
    return state


class Fail(Exception):
    def __init__(self, message: str, rc: int = 1) -> None:
        super().__init__(message)
        self.rc = rc


class Fault:
    """Fail the calls whose joined argv contains `match` (or matches it as a regex when
    `regex`): the first `times` of them (None: always), with `message` on stderr. With
    `apply` the call takes effect all the same (its answer was lost)."""

    def __init__(  # noqa: PLR0917 (built from the JSON rules: Fault(**rule))
        self,
        match: str,
        message: str = "ERROR: (gcloud) UNAVAILABLE: injected by the test (503)",
        times: int | None = 1,
        regex: bool = False,
        rc: int = 1,
        apply: bool = False,
    ) -> None:
        self.match, self.message, self.times, self.regex, self.rc = match, message, times, regex, rc
        self.apply = apply

    def hits(self, line: str) -> bool:
        return bool(re.search(self.match, line)) if self.regex else self.match in line


# ---------------------------------------------------------------- argv


class Args:
    def __init__(self, path: list[str], pos: list[str], flags: dict[str, list[str]]) -> None:
        self.path = path  # the command words, e.g. ["iam", "service-accounts", "create"]
        self.pos = pos  # positionals after the command words
        self.flags = flags  # --name -> values ("" for a boolean flag)

    def one(self, name: str, default: str | None = None) -> str | None:
        values = self.flags.get(name)
        return values[-1] if values else default

    def has(self, name: str) -> bool:
        return name in self.flags


GROUP_DEPTH = {  # how many words name the command, after the group
    "auth": 1,
    "config": 1,
    "projects": 1,
    "billing": 2,
    "services": 1,
    "iam": 2,
    "storage": 2,
    "secrets": 1,
    "tasks": 2,
    "firestore": 2,
    "logging": 2,
    "monitoring": 2,
    "functions": 1,
    "run": 2,
    "scheduler": 2,
    "pubsub": 2,
}


def parse(argv: list[str]) -> Args:
    words: list[str] = []
    flags: dict[str, list[str]] = {}
    for token in argv:
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            flags.setdefault(name, []).append(value if eq else "")
        else:
            words.append(token)
    while words and words[0] in ("alpha", "beta"):
        words = words[1:]
    if not words:
        raise Fail("ERROR: (gcloud) a command is required", 2)
    group = words[0]
    depth = GROUP_DEPTH.get(group, 1)
    if group == "storage" and len(words) > 1 and words[1] in ("service-agent", "ls", "mv"):
        depth = 1
    if group == "firestore" and len(words) > 1 and words[1] == "indexes":
        depth = 3
    if group == "secrets" and len(words) > 1 and words[1] == "versions":
        depth = 2
    if group == "scheduler" and len(words) > 3 and words[2] in ("create", "update"):
        depth = 3  # scheduler jobs create http NAME
    return Args(words[: depth + 1], words[depth + 1 :], flags)


# ---------------------------------------------------------------- output


def _get(obj: Any, key: str) -> Any:
    for part in re.findall(r'"[^"]*"|[^.]+', key):
        obj = obj.get(part.strip('"')) if isinstance(obj, dict) else None
    return obj


def render(obj: Any, fmt: str | None) -> str:
    if fmt in (None, "", "none"):
        return ""
    if fmt == "json":
        return json.dumps(obj, indent=2) + "\n"
    found = re.fullmatch(r"value\((.*)\)", fmt)
    if not found:
        raise Fail(f"ERROR: (gcloud) the fake knows no --format={fmt}", 2)
    keys = [k.strip() for k in found.group(1).split(",")]
    rows = obj if isinstance(obj, list) else [obj]
    lines = []
    for row in rows:
        values = []
        for key in keys:
            value = _get(row, key)
            values.append("" if value is None else str(value))
        lines.append("\t".join(values))
    return "".join(line + "\n" for line in lines)


# ---------------------------------------------------------------- the fake cloud


class Cloud:
    def __init__(self, state: dict[str, Any], args: Args, project: str) -> None:
        self.s = state
        self.a = args
        self.project = project
        self.out: Any = None  # what --format renders
        self.text = ""  # printed as is (no --format)
        self.err = ""

    # -- helpers
    def need_api(self) -> None:
        api = API_OF.get(self.a.path[0])
        if api and api not in self.s["enabled"]:
            raise Fail(
                f"ERROR: (gcloud.{'.'.join(self.a.path)}) PERMISSION_DENIED: {api} has not been "
                f"used in project {self.project} before or it is disabled. [SERVICE_DISABLED]"
            )

    def name(self) -> str:
        if not self.a.pos:
            raise Fail(
                f"ERROR: (gcloud.{'.'.join(self.a.path)}) argument NAME: Must be specified.", 2
            )
        return self.a.pos[0]

    def not_found(self, what: str) -> Fail:
        return Fail(
            f"ERROR: (gcloud.{'.'.join(self.a.path)}) NOT_FOUND: {what} was not found (404)"
        )

    def exists_already(self, what: str) -> Fail:
        return Fail(
            f"ERROR: (gcloud.{'.'.join(self.a.path)}) ALREADY_EXISTS: {what} already exists (409)"
        )

    def sa_exists(self, email: str) -> bool:
        return email in self.s["sas"]

    def check_member(self, member: str) -> None:
        kind, _, email = member.partition(":")
        if (
            kind == "serviceAccount"
            and email.endswith(f"@{self.project}.iam.gserviceaccount.com")
            and not self.sa_exists(email)
        ):
            raise Fail(
                f"ERROR: (gcloud.{'.'.join(self.a.path)}) INVALID_ARGUMENT: Service account "
                f"{email} does not exist."
            )

    def policy(self, key: str) -> dict[str, Any]:
        roles = self.s["policies"].get(key, {})
        return {
            "bindings": [{"role": r, "members": sorted(m)} for r, m in sorted(roles.items()) if m],
            "etag": "BwX" + format(hash(json.dumps(roles, sort_keys=True)) & 0xFFFFFFFF, "08x"),
            "version": 1,
        }

    def policy_verb(self, key: str, exists: bool, what: str) -> None:
        verb = self.a.path[-1]
        if not exists:
            raise self.not_found(what)
        if verb == "get-iam-policy":
            self.out = self.policy(key)
            if self.a.one("--flatten") == "bindings[].members":
                self.out = [
                    {"bindings": {"role": b["role"], "members": m}}
                    for b in self.out["bindings"]
                    for m in b["members"]
                ]
            return
        member, role = self.a.one("--member"), self.a.one("--role")
        if not member or not role:
            raise Fail("ERROR: (gcloud) argument --member and --role: Must be specified.", 2)
        if verb == "add-iam-policy-binding":
            self.check_member(member)
            members = self.s["policies"].setdefault(key, {}).setdefault(role, [])
            if member not in members:
                members.append(member)
        elif verb == "remove-iam-policy-binding":
            members = self.s["policies"].get(key, {}).get(role, [])
            if member not in members:
                raise Fail(
                    f"ERROR: (gcloud.{'.'.join(self.a.path)}) Policy binding with the specified "
                    "principal, role, and condition not found!"
                )
            members.remove(member)
        else:
            raise Fail(f"ERROR: unknown verb {verb}", 2)
        self.out = self.policy(key)

    # -- dispatch
    def run(self) -> None:
        path = self.a.path
        group = path[0]
        if group not in ("auth", "config", "projects", "billing", "services"):
            self.need_api()
        handler = getattr(self, "do_" + "_".join(p.replace("-", "_") for p in path[:2]), None)
        if handler is None:
            raise Fail(f"ERROR: (gcloud) the fake does not know `gcloud {' '.join(path)}`", 2)
        handler()

    def do_auth_list(self) -> None:
        self.out = [{"account": self.s["account"], "status": "ACTIVE"}] if self.s["account"] else []

    def do_config_get_value(self) -> None:
        self.text = ""
        self.err = "(unset)\n"

    def do_projects_describe(self) -> None:
        if not self.s["project_exists"] or self.name() != self.s["project"]:
            raise Fail(
                "ERROR: (gcloud.projects.describe) The project ID you specified is invalid or "
                "you don't have permission to access it (403 PERMISSION_DENIED)"
            )
        self.out = {"projectId": self.s["project"], "projectNumber": self.s["number"]}

    def do_projects_get_iam_policy(self) -> None:
        self.policy_verb(f"project:{self.name()}", self.name() == self.s["project"], "project")

    do_projects_add_iam_policy_binding = do_projects_get_iam_policy
    do_projects_remove_iam_policy_binding = do_projects_get_iam_policy

    def do_billing_projects(self) -> None:
        self.out = {"billingEnabled": self.s["billing"], "projectId": self.name()}

    def do_services_list(self) -> None:
        self.out = [{"config": {"name": api}} for api in sorted(self.s["enabled"])]

    def do_services_enable(self) -> None:
        for api in self.a.pos:
            if api not in self.s["enabled"]:
                self.s["enabled"].append(api)
        self.err = "Operation finished successfully.\n"

    def do_iam_service_accounts(self) -> None:
        verb = self.a.path[2]
        if verb == "create":
            email = f"{self.name()}@{self.project}.iam.gserviceaccount.com"
            if self.sa_exists(email):
                raise self.exists_already(f"Service account {email}")
            self.s["sas"][email] = {"email": email, "displayName": self.a.one("--display-name")}
            self.err = f"Created service account [{self.name()}].\n"
            return
        email = self.name()
        if verb == "describe":
            if not self.sa_exists(email):
                raise self.not_found(f"Service account {email}")
            self.out = self.s["sas"][email]
            return
        self.policy_verb(f"sa:{email}", self.sa_exists(email), f"Service account {email}")

    # storage
    def bucket(self) -> str:
        url = self.name()
        if not url.startswith("gs://"):
            raise Fail(f"ERROR: (gcloud.storage) invalid URL {url}", 2)
        return url[5:].rstrip("/")

    def do_storage_service_agent(self) -> None:
        self.text = f"service-{self.s['number']}@gs-project-accounts.iam.gserviceaccount.com\n"

    def do_storage_buckets(self) -> None:
        verb = self.a.path[2]
        name = self.bucket()
        buckets = self.s["buckets"]
        if verb == "create":
            if name in buckets:
                raise self.exists_already(f"gs://{name}")
            buckets[name] = {
                "name": name,
                "location": self.a.one("--location"),
                "uniform_bucket_level_access": self.a.has("--uniform-bucket-level-access"),
                "public_access_prevention": (
                    "enforced" if self.a.has("--public-access-prevention") else "inherited"
                ),
            }
            self.err = f"Creating gs://{name}/...\n"
            return
        if name not in buckets:
            raise Fail(f"ERROR: (gcloud.storage.buckets.{verb}) gs://{name} not found: 404.")
        if verb == "describe":
            self.out = buckets[name]
        elif verb == "update":
            bucket = buckets[name]
            if self.a.has("--public-access-prevention"):
                bucket["public_access_prevention"] = "enforced"
            for flag in ("--cors-file", "--lifecycle-file"):
                if self.a.has(flag):
                    bucket[flag[2:]] = _read(self.a.one(flag) or "")
        else:
            self.policy_verb(f"bucket:{name}", True, f"gs://{name}")

    def do_storage_ls(self) -> None:
        url = self.name()
        bucket = url[5:].split("/", 1)[0]
        if bucket not in self.s["buckets"]:
            raise Fail(f"ERROR: (gcloud.storage.ls) gs://{bucket} not found: 404.")
        prefix = url[5:]
        hits = [o for o in self.s["objects"] if o.startswith(prefix)]
        if not hits:
            raise Fail("ERROR: (gcloud.storage.ls) One or more URLs matched no objects.")
        self.text = "".join(f"gs://{o}\n" for o in hits)

    def do_storage_objects(self) -> None:  # list gs://B/PREFIX* [--limit=N]
        url = self.name()
        bucket = url[5:].split("/", 1)[0]
        if bucket not in self.s["buckets"]:
            raise Fail(f"ERROR: (gcloud.storage.objects.list) gs://{bucket} not found: 404.")
        prefix = url[5:].rstrip("*")
        hits = [o for o in self.s["objects"] if o.startswith(prefix)]
        if not hits:
            raise Fail("ERROR: (gcloud.storage.objects.list) One or more URLs matched no objects.")
        limit = int(self.a.one("--limit") or len(hits))
        self.out = [{"name": o.split("/", 1)[1], "bucket": bucket} for o in hits[:limit]]

    def do_storage_mv(self) -> None:
        src, dst = self.a.pos[0], self.a.pos[1]
        prefix = src[5:].rstrip("*")
        moved = [o for o in self.s["objects"] if o.startswith(prefix)]
        for obj in moved:
            self.s["objects"].remove(obj)
            self.s["objects"].append(dst[5:] + obj[len(prefix) :])

    # secrets
    def do_secrets_describe(self) -> None:
        if self.name() not in self.s["secrets"]:
            raise self.not_found(f"Secret [projects/{self.s['number']}/secrets/{self.name()}]")
        self.out = {"name": f"projects/{self.s['number']}/secrets/{self.name()}"}

    def do_secrets_create(self) -> None:
        if self.name() in self.s["secrets"]:
            raise self.exists_already(f"Secret {self.name()}")
        data_file = self.a.one("--data-file")
        data = sys.stdin.read() if data_file == "-" else _read(data_file or "")
        self.s["secrets"][self.name()] = {"versions": [data]}
        self.err = f"Created version [1] of the secret [{self.name()}].\n"

    def do_secrets_get_iam_policy(self) -> None:
        self.policy_verb(f"secret:{self.name()}", self.name() in self.s["secrets"], "Secret")

    do_secrets_add_iam_policy_binding = do_secrets_get_iam_policy

    def do_secrets_versions(self) -> None:
        if self.a.path[2] == "add":
            secret = self.s["secrets"].get(self.name())
            if not secret:
                raise self.not_found("Secret")
            secret["versions"].append(_read(self.a.one("--data-file") or ""))
            return
        secret = self.s["secrets"].get(self.a.one("--secret") or "")
        if not secret:
            raise self.not_found("Secret")
        self.text = secret["versions"][-1]

    # pubsub
    def do_pubsub_topics(self) -> None:
        verb = self.a.path[2]
        topics = self.s.setdefault("topics", [])
        name = self.name()
        if verb == "create":
            if name in topics:
                raise self.exists_already(f"Topic {name}")
            topics.append(name)
        elif verb == "describe":
            if name not in topics:
                raise self.not_found(f"Topic {name}")
            self.out = {"name": f"projects/{self.project}/topics/{name}"}
        else:
            self.policy_verb(f"topic:{name}", name in topics, f"Topic {name}")

    # tasks
    def do_tasks_queues(self) -> None:
        verb = self.a.path[2]
        key = f"{self.a.one('--location')}/{self.name()}"
        queues = self.s["queues"]
        flags = {
            k: v[-1] for k, v in self.a.flags.items() if k.startswith("--max") or "backoff" in k
        }
        if verb == "create":
            if key in queues:
                raise self.exists_already(f"Queue {key}")
            queues[key] = flags
        elif verb == "update":
            if key not in queues:
                raise self.not_found(f"Queue {key}")
            queues[key].update(flags)
        elif verb == "describe":
            if key not in queues:
                raise self.not_found(f"Queue {key}")
            self.out = {"name": f"projects/{self.project}/locations/{key.replace('/', '/queues/')}"}
        else:
            self.policy_verb(f"queue:{key}", key in queues, f"Queue {key}")

    # firestore
    def database(self) -> str:
        db = self.a.one("--database") or "(default)"
        if db not in self.s["databases"]:
            raise self.not_found(f"The database {db} does not exist for project {self.project}")
        return db

    def do_firestore_databases(self) -> None:
        verb = self.a.path[2]
        db = self.a.one("--database") or "(default)"
        if verb == "create":
            if db in self.s["databases"]:
                raise self.exists_already(f"Database {db}")
            self.s["databases"][db] = {"name": f"projects/{self.project}/databases/{db}"}
        else:
            self.out = self.s["databases"][self.database()]

    def do_firestore_indexes(self) -> None:
        kind, verb = self.a.path[2], self.a.path[3]
        db = self.database()
        if kind == "composite":
            indexes = self.s["indexes"].setdefault(db, [])
            if verb == "list":
                self.out = indexes
                return
            group = self.a.one("--collection-group")
            fields = []
            for spec in self.a.flags.get("--field-config", []):
                parts = dict(p.split("=", 1) for p in spec.split(","))
                fields.append({"fieldPath": parts["field-path"], "order": parts["order"].upper()})
            fields.append({"fieldPath": "__name__", "order": "ASCENDING"})
            scope = self.a.one("--query-scope", "COLLECTION")
            for index in indexes:
                if index["fields"] == fields and f"/collectionGroups/{group}/" in index["name"]:
                    raise self.exists_already("Index")
            indexes.append(
                {
                    "name": f"projects/{self.project}/databases/{db}/collectionGroups/{group}"
                    f"/indexes/CICAg{len(indexes)}",
                    "queryScope": scope,
                    "fields": fields,
                    "state": "CREATING",
                }
            )
            return
        group = self.a.one("--collection-group")
        key = f"{group}/{self.name()}"
        disabled = self.s["fields"].setdefault(db, {})
        if verb == "describe":
            config = {} if disabled.get(key) else {"usesAncestorConfig": True, "indexes": [{}]}
            self.out = {"name": f"{db}/collectionGroups/{key}", "indexConfig": config}
        elif verb == "update":
            disabled[key] = self.a.has("--disable-indexes")

    # logging
    def do_logging_metrics(self) -> None:
        verb = self.a.path[2]
        name = self.name()
        metrics = self.s["metrics"]
        if verb == "describe":
            if name not in metrics:
                raise self.not_found(f"Metric {name}")
            self.out = {"name": name}
            return
        config = _read(self.a.one("--config-from-file") or "")
        if "filter:" not in config:
            raise Fail("ERROR: (gcloud.logging.metrics) INVALID_ARGUMENT: a filter is required")
        if verb == "create":
            if name in metrics:
                raise self.exists_already(f"Metric {name}")
        elif name not in metrics:
            raise self.not_found(f"Metric {name}")
        metrics[name] = config

    # monitoring
    def do_monitoring_channels(self) -> None:
        verb = self.a.path[2]
        channels = self.s["channels"]
        if verb == "list":
            wanted = re.findall(r'labels\.email_address="([^"]+)"', self.a.one("--filter") or "")
            self.out = [c for c in channels if not wanted or c["labels"]["email_address"] in wanted]
        elif verb == "create":
            labels = dict(
                p.split("=", 1) for p in (self.a.one("--channel-labels") or "").split(",")
            )
            channel = {
                "name": f"projects/{self.project}/notificationChannels/{len(channels) + 1}",
                "type": self.a.one("--type"),
                "labels": labels,
                "displayName": self.a.one("--display-name"),
            }
            channels.append(channel)
            self.err = f"Created notification channel [{channel['name']}].\n"

    def do_monitoring_policies(self) -> None:
        verb = self.a.path[2]
        policies = self.s["alert_policies"]
        if verb == "list":
            wanted = re.findall(r'displayName="([^"]+)"', self.a.one("--filter") or "")
            self.out = [p for p in policies if not wanted or p["displayName"] in wanted]
            return
        text = _read(self.a.one("--policy-from-file") or "")
        display = re.search(r'^displayName: "(.*)"$', text, re.M)
        if not display:
            raise Fail("ERROR: (gcloud.alpha.monitoring.policies) the policy has no displayName")
        for metric in re.findall(r"logging\.googleapis\.com/user/([\w-]+)", text):
            if metric not in self.s["metrics"]:
                raise Fail(
                    f"ERROR: (gcloud.alpha.monitoring.policies.{verb}) INVALID_ARGUMENT: Cannot "
                    f"find metric(s) that match type = logging.googleapis.com/user/{metric}"
                )
        for channel in re.findall(r"projects/[^/]+/notificationChannels/\d+", text):
            if not any(c["name"] == channel for c in self.s["channels"]):
                raise self.not_found(f"Notification channel {channel}")
        if verb == "create":
            policy = {
                "name": f"projects/{self.project}/alertPolicies/{len(policies) + 1}",
                "displayName": display.group(1),
                "text": text,
            }
            policies.append(policy)
            self.err = f"Created alert policy [{policy['name']}].\n"
        elif verb == "update":
            for policy in policies:
                if policy["name"] == self.name():
                    policy.update(displayName=display.group(1), text=text)
                    return
            raise self.not_found(f"Alert policy {self.name()}")

    # functions and Cloud Run
    def do_functions_deploy(self) -> None:
        name = self.name()
        region = self.a.one("--region")
        for flag in ("--service-account", "--trigger-service-account"):
            email = self.a.one(flag)
            if email and not self.sa_exists(email):
                raise Fail(
                    f"ERROR: (gcloud.functions.deploy) INVALID_ARGUMENT: {email} does not exist"
                )
        build = self.a.one("--build-service-account") or ""
        if build and not self.sa_exists(build.rsplit("/", 1)[-1]):
            raise Fail(f"ERROR: (gcloud.functions.deploy) INVALID_ARGUMENT: {build} does not exist")
        for secret in self.a.flags.get("--set-secrets", []):
            secret_name = secret.split("=", 1)[1].split(":", 1)[0]
            if secret_name not in self.s["secrets"]:
                raise Fail(f"ERROR: (gcloud.functions.deploy) secret {secret_name} not found")
        source = self.a.one("--source") or ""
        main_py, requirements = (
            os.path.join(source, "main.py"),
            os.path.join(source, "requirements.txt"),
        )
        env_yaml = self.a.one("--env-vars-file") or ""
        if not os.path.isfile(main_py) or not os.path.isfile(requirements):
            raise Fail(f"ERROR: (gcloud.functions.deploy) no main.py/requirements.txt in {source}")
        uri = self.s["function_uris"].get(name) or f"https://{name}-abcdefgh-uc.a.run.app"
        self.s["functions"][f"{region}/{name}"] = {
            "name": f"projects/{self.project}/locations/{region}/functions/{name}",
            "entryPoint": self.a.one("--entry-point"),
            "serviceConfig": {"uri": uri, "serviceAccountEmail": self.a.one("--service-account")},
            "requirements": _read(requirements),
            "env": _read(env_yaml) if os.path.exists(env_yaml) else "",
        }
        service = self.s["services"].setdefault(f"{region}/{name}", {"audiences": []})
        roles = self.s["policies"].setdefault(f"run:{region}/{name}", {})
        if self.a.has("--allow-unauthenticated"):
            roles.setdefault("roles/run.invoker", [])
            if "allUsers" not in roles["roles/run.invoker"]:
                roles["roles/run.invoker"].append("allUsers")
        del service

    def do_functions_describe(self) -> None:
        key = f"{self.a.one('--region')}/{self.name()}"
        if key not in self.s["functions"]:
            raise self.not_found(f"Function {key}")
        self.out = self.s["functions"][key]

    def do_run_services(self) -> None:
        verb = self.a.path[2]
        key = f"{self.a.one('--region')}/{self.name()}"
        service = self.s["services"].get(key)
        if verb in ("get-iam-policy", "add-iam-policy-binding"):
            self.policy_verb(f"run:{key}", service is not None, f"Service {key}")
            return
        if service is None:
            raise self.not_found(f"Service {key}")
        if verb == "describe":
            self.out = {
                "metadata": {
                    "name": self.name(),
                    "annotations": {
                        "run.googleapis.com/custom-audiences": json.dumps(service["audiences"])
                    },
                }
            }
        elif verb == "update":
            for audience in self.a.flags.get("--add-custom-audiences", []):
                if audience not in service["audiences"]:
                    service["audiences"].append(audience)

    def do_scheduler_jobs(self) -> None:
        verb = self.a.path[2]
        key = f"{self.a.one('--location')}/{self.name()}"
        jobs = self.s["jobs"]
        if verb == "describe":
            if key not in jobs:
                raise self.not_found(f"Job {key}")
            self.out = {"name": key, **jobs[key]}
            return
        email = self.a.one("--oidc-service-account-email")
        if email and not self.sa_exists(email):
            raise Fail(f"ERROR: (gcloud.scheduler.jobs) INVALID_ARGUMENT: {email} does not exist")
        job = {k[2:]: v[-1] for k, v in self.a.flags.items() if k not in ("--project", "--quiet")}
        if verb == "create":
            if key in jobs:
                raise self.exists_already(f"Job {key}")
            jobs[key] = job
        else:
            if key not in jobs:
                raise self.not_found(f"Job {key}")
            jobs[key].update(job)


# ---------------------------------------------------------------- the command


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def load_state(directory: str) -> dict[str, Any]:
    path = os.path.join(directory, "state.json")
    return json.loads(_read(path)) if os.path.exists(path) else initial_state()


def save_state(directory: str, state: dict[str, Any]) -> None:
    tmp = os.path.join(directory, "state.json.tmp")
    _write(tmp, json.dumps(state))
    os.replace(tmp, os.path.join(directory, "state.json"))


def snapshot_files(directory: str, seq: int, argv: list[str]) -> dict[str, str]:
    """Copies of the files and directories the call names (for the replay through the real
    gcloud: the scripts' temporary files are gone by then)."""
    files: dict[str, str] = {}
    for index, token in enumerate(argv):
        name, eq, value = token.partition("=")
        if not eq or name not in FILE_FLAGS or value == "-" or not os.path.exists(value):
            continue
        import shutil  # noqa: PLC0415 (only when needed: start-up time)

        dest = os.path.join(directory, "files", f"{seq}-{index}-{os.path.basename(value)}")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if os.path.isdir(value):
            shutil.copytree(value, dest, ignore=shutil.ignore_patterns("*.whl"))
        else:
            shutil.copyfile(value, dest)
        files[str(index)] = dest
    return files


def handle(directory: str, argv: list[str]) -> tuple[int, str, str]:
    """One gcloud call against the fake cloud in `directory`: (exit code, stdout, stderr)."""
    started = time.time()
    if "--help" in argv:
        return 0, "", ""
    try:
        args = parse(argv)
    except Fail as exc:
        return exc.rc, "", str(exc) + "\n"
    if args.path[:2] == ["functions", "deploy"]:
        # Deploys take a while, so parallel ones overlap. Long enough that the seven
        # interpreters of a parallel deploy have all started on a loaded 2-core machine
        # before the first one ends (0.3 s was not, under a full test run).
        time.sleep(float(os.environ.get("FAKE_GCLOUD_DEPLOY_SECONDS", "1.5")))
    rc, stdout, stderr = 0, "", ""
    with open(os.path.join(directory, "lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = load_state(directory)
        state["seq"] += 1
        seq = state["seq"]
        line = " ".join(argv)
        faults_path = os.path.join(directory, "faults.json")
        faults = json.loads(_read(faults_path)) if os.path.exists(faults_path) else []
        fault = next((f for f in faults if Fault(**f).hits(line) and f.get("times") != 0), None)
        files = snapshot_files(directory, seq, argv)
        if fault is not None and fault.get("times") is not None:
            fault["times"] -= 1
            _write(faults_path, json.dumps(faults))
        if fault is not None and not fault.get("apply"):
            rc, stderr = fault.get("rc", 1), fault["message"] + "\n"
        else:
            project = args.one("--project") or state["project"]
            cloud = Cloud(state, args, project)
            try:
                if project != state["project"]:
                    raise Fail(f"ERROR: (gcloud) project {project!r} is not {state['project']!r}")
                cloud.run()
                if cloud.out is not None:
                    stdout = render(cloud.out, args.one("--format"))
                stdout += cloud.text
                stderr = cloud.err
            except Fail as exc:
                rc, stderr = exc.rc, str(exc) + "\n"
                state = load_state(directory)  # a failed call changes nothing
            if fault is not None:  # "apply": done, but the answer is lost (a 503 after all)
                rc, stdout, stderr = fault.get("rc", 1), "", fault["message"] + "\n"
        state["seq"] = seq
        save_state(directory, state)
        record = {
            "seq": seq,
            "argv": argv,
            "rc": rc,
            "start": started,
            "end": time.time(),
            "files": files,
            "injected": fault is not None,
        }
        with open(os.path.join(directory, "calls.jsonl"), "a") as calls:
            calls.write(json.dumps(record) + "\n")
    return rc, stdout, stderr


def main(argv: list[str]) -> int:
    rc, stdout, stderr = handle(os.environ["FAKE_GCLOUD_DIR"], argv)
    sys.stdout.write(stdout)
    sys.stderr.write(stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
