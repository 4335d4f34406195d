from pathlib import Path

import pytest

from imgpipe.errors import ConfigError
from imgpipe.renditions import RenditionSpec, parse_specs
from imgpipe.settings import Settings


def test_defaults_follow_the_spec() -> None:
    s = Settings.from_env({})
    assert s.backend == "local"
    assert s.data_dir == Path(".imgpipe")
    assert s.max_pixels == 100_000_000
    assert s.max_upload_bytes == 30 * 1024 * 1024
    assert s.max_attempts == 5
    assert [spec.width for spec in s.renditions] == [320, 640, 1280, 1920, 3840]


def test_rendition_specs_parse_all_three_forms() -> None:
    assert parse_specs("640, 1920x1080,1080x1920:cover") == (
        RenditionSpec(640),
        RenditionSpec(1920, 1080),
        RenditionSpec(1080, 1920, cover=True),
    )


@pytest.mark.parametrize("bad", ["", "abc", "640x", "0", "640:cover", "99999999", "640,640"])
def test_bad_renditions_name_the_variable(bad: str) -> None:
    with pytest.raises(ConfigError, match="IMGPIPE_RENDITIONS"):
        Settings.from_env({"IMGPIPE_RENDITIONS": bad or ","})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IMGPIPE_MAX_PIXELS", "lots"),
        ("IMGPIPE_MAX_ATTEMPTS", "0"),
        ("IMGPIPE_BACKEND", "azure"),
        ("IMGPIPE_TASK_AUTH", "none"),
        ("IMGPIPE_MAX_UPLOAD_BYTES", "-1"),
    ],
)
def test_malformed_settings_fail_with_their_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_gcp_backend_requires_its_settings() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"IMGPIPE_BACKEND": "gcp"})
    for name in ("GOOGLE_CLOUD_PROJECT", "IMGPIPE_BUCKET", "IMGPIPE_API_TOKEN"):
        assert name in str(info.value)


def test_fingerprint_changes_with_renditions() -> None:
    a = Settings.from_env({})
    b = Settings.from_env({"IMGPIPE_RENDITIONS": "320,640"})
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == Settings.from_env({}).fingerprint


def test_firestore_database_per_environment() -> None:
    assert Settings.from_env({}).firestore_database == "(default)"
    env = {"IMGPIPE_FIRESTORE_DATABASE": "imgpipe-dev"}
    assert Settings.from_env(env).firestore_database == "imgpipe-dev"
    for bad in ("Prod", "a/b", "x", "imgpipe-"):
        with pytest.raises(ConfigError, match="IMGPIPE_FIRESTORE_DATABASE"):
            Settings.from_env({"IMGPIPE_FIRESTORE_DATABASE": bad})
