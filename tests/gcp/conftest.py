"""Fixtures for the gcp suite; they live in gcpharness.py so test modules can import its
helpers under a name no other suite uses."""

from gcpharness import (  # noqa: F401 (re-exported fixtures)
    deployment,
    firestore_host,
    gcs,
    in_process,
    jwks,
    log_dir,
    pubsub_host,
    sa_key_file,
    session_env,
    signing_key,
    tasks_host,
)
