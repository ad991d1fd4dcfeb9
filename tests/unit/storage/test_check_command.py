"""`audiojobs storage check`, as an operator runs it: a real process against a real S3 server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.services import S3Server


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIO", "AWS_"))}
    return subprocess.run([sys.executable, "-m", "audiojobs.cli", "storage", "check"], env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def test_storage_check_says_what_it_found(tmp_path: Path, s3_server: S3Server) -> None:
    done = _check({"AUDIO_WORK_DIR": str(tmp_path / "work")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"storage ok: {(tmp_path / 'work').resolve().as_uri()}: wrote, read back and "
                                  "deleted audiojobs-probe/")
    s3 = {**s3_server.env, "AUDIO_STORAGE_URL": "s3://audiojobs/check"}
    done = _check(s3)
    assert done.returncode == 0, done.stderr
    assert f"storage ok: s3://audiojobs/check/ at {s3_server.endpoint}" in done.stdout
    assert not list((s3_server.data_dir / "audiojobs" / "check").rglob("*.*"))  # the probe is gone

    done = _check({**s3, "AUDIO_STORAGE_URL": "s3://missing-bucket"})
    assert done.returncode == 1
    assert "storage misconfigured (storage_misconfigured): AUDIO_STORAGE_URL: the bucket 'missing-bucket'" \
        in done.stderr
    done = _check({**s3, "AWS_SECRET_ACCESS_KEY": "wrong"})
    assert done.returncode == 1 and "AWS_SECRET_ACCESS_KEY" in done.stderr
    outage = S3Server(tmp_path / "s3")
    outage.stop()
    done = _check({**s3, "AUDIO_S3_ENDPOINT_URL": outage.endpoint})
    assert done.returncode == 1 and "storage unreachable (storage_unavailable)" in done.stderr
