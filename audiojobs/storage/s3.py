"""The S3 store: any S3-compatible object store through boto3.

boto3 because it is the reference client every S3-compatible server is tested against (AWS, MinIO,
Ceph, rclone, R2 …), reads credentials and region from the standard AWS variables and config
chain, and its managed transfers stream files: one request up to 32 MB (fewer round trips for the
WAV of a clip of minutes), 8 MB multipart parts two at a time above, so memory stays at about
``max_concurrency × multipart_chunksize`` (2 × 8 MB) whatever the file size (scripts/bench part g:
36 MB more at peak while 1 GB went up and back; 48–51 MB with four at a time).

Errors: unreachable, timeouts, throttling and 5xx are ``StorageUnavailable`` (transient: the stage
is retried, nothing is lost); no such bucket and refused credentials are ``StorageMisconfigured``
(permanent: the message names the setting); a missing object is ``ArtifactMissing``.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar
from urllib.parse import urlparse

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from audiojobs.errors import ArtifactMissing, ConfigError, StorageMisconfigured, StorageUnavailable

T = TypeVar("T")
PART_BYTES = 8 * 1024 * 1024
TRANSFER = TransferConfig(multipart_threshold=4 * PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=2,
                          use_threads=True)
_MISSING = {"NoSuchKey", "NotFound", "404"}
_NO_BUCKET = {"NoSuchBucket"}
_REFUSED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
            "AuthorizationHeaderMalformed", "InvalidToken", "ExpiredToken", "403"}


class S3Store:
    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self._local = threading.local()

    @classmethod
    def from_url(cls, url: str, endpoint_url: str | None) -> S3Store:
        parsed = urlparse(url)
        if not parsed.netloc:
            raise ConfigError(f"AUDIO_STORAGE_URL: an S3 store is s3://BUCKET/PREFIX, not {url!r}")
        prefix = parsed.path.strip("/")
        return cls(parsed.netloc, f"{prefix}/" if prefix else "", endpoint_url or None)

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"

    def _client(self) -> Any:
        # One client per process and thread: a forked worker must not share its parent's connections.
        client = getattr(self._local, "client", None)
        if client is None or getattr(self._local, "pid", None) != os.getpid():
            config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"},
                            s3={"addressing_style": "path"} if self.endpoint_url else {})
            session = boto3.session.Session()
            region = session.region_name or ("us-east-1" if self.endpoint_url else None)
            client = session.client("s3", endpoint_url=self.endpoint_url, region_name=region, config=config)
            self._local.client, self._local.pid = client, os.getpid()
        return client

    def _key(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"not an object key: {key!r}")
        return f"{self.prefix}{key}"

    def _fail(self, exc: Exception, key: str | None) -> NoReturn:
        where = self.describe()
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in _MISSING and key is not None:
                if code == "404" and not self._bucket_exists():  # a HEAD's bare 404 says not which
                    raise StorageMisconfigured(
                        f"AUDIO_STORAGE_URL: the bucket {self.bucket!r} does not exist ({where})") from None
                raise ArtifactMissing(f"{key} is not in {where}") from None
            if code in _NO_BUCKET or (code in _MISSING and key is None):  # head_bucket says only 404
                raise StorageMisconfigured(f"AUDIO_STORAGE_URL: the bucket {self.bucket!r} does not exist ({where})") \
                    from None
            if code in _REFUSED or status == 403:
                raise StorageMisconfigured(
                    f"{where} refused the credentials ({code}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
                    "(or the AWS config chain) and AUDIO_S3_ENDPOINT_URL") from None
            raise StorageUnavailable(f"{where} answered {status or '?'} {code}") from None
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            raise StorageMisconfigured(f"{where}: no AWS credentials found (AWS_ACCESS_KEY_ID / "
                                       "AWS_SECRET_ACCESS_KEY or the AWS config chain)") from None
        raise StorageUnavailable(f"{where} is unreachable ({type(exc).__name__})") from None

    def _call(self, fn: Callable[[], T], key: str | None = None) -> T:
        try:
            return fn()
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, key)
        except Boto3Error as exc:
            # The managed transfers wrap what went wrong: upload_file raises S3UploadFailedError
            # in the ClientError's handler, download_file RetriesExceededError with the last error.
            inner = getattr(exc, "last_exception", None) or exc.__cause__ or exc.__context__
            if isinstance(inner, ClientError | BotoCoreError):
                self._fail(inner, key)
            raise StorageUnavailable(f"{self.describe()}: {exc}") from None
        except OSError as exc:  # a connection reset below botocore
            raise StorageUnavailable(f"{self.describe()} is unreachable ({exc!r})") from None

    def _bucket_exists(self) -> bool:
        try:
            self._client().head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            return str(exc.response.get("Error", {}).get("Code", "")) not in _MISSING | _NO_BUCKET
        except BotoCoreError:
            return True  # unknown: let the caller's error stand
        return True

    def put_file(self, key: str, source: Path) -> None:
        self._call(lambda: self._client().upload_file(str(source), self.bucket, self._key(key), Config=TRANSFER))

    def put_stream(self, key: str, stream: IO[bytes]) -> None:
        self._call(lambda: self._client().upload_fileobj(stream, self.bucket, self._key(key), Config=TRANSFER))

    def fetch_file(self, key: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            self._call(lambda: self._client().download_file(self.bucket, self._key(key), str(tmp), Config=TRANSFER),
                       key)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call(lambda: self._client().put_object(Bucket=self.bucket, Key=self._key(key), Body=data))

    def get_bytes(self, key: str) -> bytes:
        return self._call(lambda: self._client().get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read(),
                          key)

    def local_path(self, key: str) -> Path | None:
        return None

    def list_objects(self, prefix: str) -> Iterator[tuple[str, dt.datetime]]:
        pages = self._call(lambda: self._client().get_paginator("list_objects_v2")
                           .paginate(Bucket=self.bucket, Prefix=f"{self.prefix}{prefix}"))
        iterator = iter(pages)
        while True:
            page = self._call(lambda: next(iterator, None))
            if page is None:
                return
            for item in page.get("Contents", []):
                yield item["Key"][len(self.prefix):], item["LastModified"].astimezone(dt.timezone.utc)

    def delete_prefix(self, prefix: str) -> int:
        keys = [key for key, _when in self.list_objects(prefix)]
        for start in range(0, len(keys), 1000):  # the API's limit per request
            batch = [{"Key": self._key(k)} for k in keys[start:start + 1000]]
            self._call(lambda b=batch: self._client().delete_objects(Bucket=self.bucket,  # type: ignore[misc]
                                                                     Delete={"Objects": b, "Quiet": True}))
        return len(keys)

    def ready(self) -> None:
        self._call(lambda: self._client().head_bucket(Bucket=self.bucket))
