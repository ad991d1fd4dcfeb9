"""Both artifact stores behind one interface: the ``file`` store and S3 against a real S3 server
(``rclone serve s3``), with S3's faults classified: transient, misconfigured, missing."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path

import pytest

from audiojobs import storage
from audiojobs.config import Settings
from audiojobs.errors import ArtifactMissing, ConfigError, StorageMisconfigured, StorageUnavailable
from audiojobs.storage.filestore import FileStore
from audiojobs.storage.interfaces import ArtifactStore
from audiojobs.storage.s3 import S3Store
from tests.services import S3Server


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "file":
        return FileStore(tmp_path / "objects")
    server: S3Server = request.getfixturevalue("s3_env")
    return S3Store("audiojobs", f"t-{secrets.token_hex(4)}/", server.endpoint)  # a prefix of this test's own


def test_objects_round_trip_and_go_away(store: ArtifactStore, tmp_path: Path) -> None:
    before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)
    store.put_bytes("jobs/u1/audio_transcribe/3/transcript.json", b'{"text": "ask not"}')
    assert store.get_bytes("jobs/u1/audio_transcribe/3/transcript.json") == b'{"text": "ask not"}'
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(40 * 1024 * 1024 + 123))  # past the 32 MB multipart threshold: six parts
    store.put_file("jobs/u1/audio_convert/2/audio.wav", big)
    fetched = tmp_path / "scratch" / "audio.wav"
    store.fetch_file("jobs/u1/audio_convert/2/audio.wav", fetched)
    assert fetched.read_bytes() == big.read_bytes()
    store.put_bytes("jobs/u2/upload/0/source.flac", b"x")
    listed = dict(store.list_objects("jobs/u1/"))
    assert sorted(listed) == ["jobs/u1/audio_convert/2/audio.wav", "jobs/u1/audio_transcribe/3/transcript.json"]
    assert all(when >= before and when.tzinfo is not None for when in listed.values())
    assert store.delete_prefix("jobs/u1/") == 2
    assert list(store.list_objects("jobs/u1/")) == []
    assert [k for k, _ in store.list_objects("jobs/")] == ["jobs/u2/upload/0/source.flac"]  # others untouched
    with pytest.raises(ArtifactMissing):
        store.get_bytes("jobs/u1/audio_transcribe/3/transcript.json")
    with pytest.raises(ArtifactMissing):
        store.fetch_file("jobs/u1/audio_convert/2/audio.wav", tmp_path / "nope")
    assert not (tmp_path / "nope").exists()


def test_keys_cannot_leave_the_store(store: ArtifactStore) -> None:
    for key in ("../escape", "/abs/key", "jobs/../../escape", ""):
        with pytest.raises(ValueError):
            store.put_bytes(key, b"x")


def test_a_file_store_object_is_read_in_place(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "objects")
    store.put_bytes("a/b", b"1")
    assert store.local_path("a/b") == tmp_path / "objects" / "a" / "b"
    assert store.local_path("a/c") is None
    assert S3Store("b", "", None).local_path("a/b") is None


def test_the_store_follows_the_settings(tmp_path: Path, s3_env: S3Server) -> None:
    default = storage.open_store(Settings.from_env({"AUDIO_WORK_DIR": str(tmp_path / "work")}))
    assert default.describe() == (tmp_path / "work").resolve().as_uri()
    chosen = storage.open_store(Settings.from_env({"AUDIO_STORAGE_URL": f"file://{tmp_path}/elsewhere"}))
    assert chosen.describe() == f"file://{tmp_path}/elsewhere"
    s3 = storage.open_store(Settings.from_env({"AUDIO_STORAGE_URL": "s3://audiojobs/some/prefix",
                                               "AUDIO_S3_ENDPOINT_URL": s3_env.endpoint}))
    assert s3.describe() == f"s3://audiojobs/some/prefix/ at {s3_env.endpoint}"
    for report in (storage.check(default), storage.check(s3)):
        assert report.key.startswith(storage.PROBE_PREFIX) and report.size > 0
    assert list(s3.list_objects(storage.PROBE_PREFIX)) == []  # the probe cleans up after itself
    with pytest.raises(ConfigError, match="AUDIO_STORAGE_URL"):
        storage.open_store(Settings.from_env({"AUDIO_STORAGE_URL": "ftp://host/x"}))
    with pytest.raises(ConfigError, match="AUDIO_STORAGE_URL"):
        storage.open_store(Settings.from_env({"AUDIO_STORAGE_URL": "s3:///no-bucket"}))


def test_a_missing_bucket_or_refused_credentials_are_misconfigured(s3_env: S3Server,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    no_bucket = S3Store("no-such-bucket", "", s3_env.endpoint)
    for action in (lambda: no_bucket.put_bytes("k", b"1"), no_bucket.ready):
        with pytest.raises(StorageMisconfigured, match="AUDIO_STORAGE_URL.*no-such-bucket") as caught:
            action()
        assert not caught.value.transient
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    refused = S3Store("audiojobs", "", s3_env.endpoint)
    with pytest.raises(StorageMisconfigured, match="AWS_SECRET_ACCESS_KEY"):
        refused.put_bytes("k", b"1")


def test_an_unreachable_store_is_transient(tmp_path: Path, s3_env: S3Server) -> None:
    outage = S3Server(tmp_path / "s3")  # a server of this test's own, to stop
    store = S3Store("audiojobs", "", outage.endpoint)
    store.put_bytes("k", b"1")
    outage.stop()
    try:
        with pytest.raises(StorageUnavailable, match="unreachable") as caught:
            store.get_bytes("k")
        assert caught.value.transient and caught.value.code == "storage_unavailable"
        with pytest.raises(StorageUnavailable):
            store.ready()
    finally:
        outage.start()
    assert store.get_bytes("k") == b"1"  # back, with its data
    outage.stop()


def test_a_file_upload_to_a_missing_bucket_is_misconfigured_too(tmp_path: Path, s3_env: S3Server) -> None:
    """upload_file and download_file wrap the server's answer in boto3's own errors: still classified."""
    source = tmp_path / "a.wav"
    source.write_bytes(b"RIFF")
    store = S3Store("no-such-bucket", "", s3_env.endpoint)
    with pytest.raises(StorageMisconfigured, match="no-such-bucket"):
        store.put_file("k", source)
    with pytest.raises(StorageMisconfigured, match="no-such-bucket"):
        store.fetch_file("k", tmp_path / "back.wav")
