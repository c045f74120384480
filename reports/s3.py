"""Publish the website's files to an S3 bucket (or an S3-compatible store such as MinIO).

The monthly site is a tree of small files that is published again every month, and again when
late events give a month a new revision. Most of it does not change between publications, so
each object carries the SHA-256 of its bytes in its metadata (``x-amz-meta-sha256``) and a file
whose bytes and headers already match is not sent again: re-publishing is cheap and idempotent.
The SHA-256 is stored rather than trusting the ETag, because the ETag is an MD5 of the body only
for plain single-part uploads (not with SSE-KMS, SSE-C or multipart).

Each object is written whole (an S3 PUT replaces an object atomically), with the Content-Type a
browser needs and a Cache-Control that lets pages and data refresh within minutes while the
style sheet, scripts and images are cached longer. Files that link to others go after the files
they link to: first the plain files (CSV, JSON, assets), then ``datapackage.json``, then HTML
pages from the deepest to the top-level ``index.html``, so a reader never follows a link to an
object that is not there yet. Objects no longer in the tree are left in place (old links keep
working).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import mimetypes
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from reports.catalog import CATALOG

log = logging.getLogger(__name__)

SCHEME = "s3://"
SHA256_METADATA = "sha256"  # stored as x-amz-meta-sha256

SHORT_CACHE = "public, max-age=300"  # pages and data: a new revision shows within minutes
LONG_CACHE = "public, max-age=86400"  # style sheet, scripts, images, fonts

CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".css": "text/css",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".xml": "application/xml",
    ".pdf": "application/pdf",
}
FALLBACK_CONTENT_TYPE = "application/octet-stream"
LONG_CACHE_SUFFIXES = frozenset({".css", ".js", ".mjs", ".map", ".svg", ".png", ".jpg", ".jpeg",
                                 ".gif", ".webp", ".ico", ".woff", ".woff2"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
DESCRIPTOR_NAME = "datapackage.json"

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
MAX_WORKERS = 8

T = TypeVar("T")


class PublishError(RuntimeError):
    """Publication to S3 failed; the message says where and why (no partial object is left)."""


@dataclass(frozen=True)
class S3Target:
    """``s3://bucket/prefix``, parsed: ``prefix`` has no leading or trailing ``/``."""

    bucket: str
    prefix: str = ""

    def key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix + '/' if self.prefix else ''}"


@dataclass(frozen=True)
class UploadSummary:
    """What a publication did: relative paths uploaded and left unchanged."""

    target: str
    uploaded: tuple[str, ...]
    unchanged: tuple[str, ...]
    bytes_uploaded: int

    def __str__(self) -> str:
        return (f"{self.target}: {len(self.uploaded)} uploaded ({self.bytes_uploaded} bytes), "
                f"{len(self.unchanged)} unchanged")


def is_s3_target(s: str) -> bool:
    """True for anything that means S3 (``s3://...``), valid or not, so a mistyped bucket is
    reported by :func:`parse_s3_target` instead of becoming a local folder named ``s3:``."""
    return s.strip().lower().startswith(SCHEME)


def parse_s3_target(target: str) -> S3Target:
    """``s3://bucket[/prefix[/]]`` -> :class:`S3Target`; ValueError saying what is wrong."""
    text = target.strip()
    if not is_s3_target(text):
        raise ValueError(f"not an S3 target: {target!r} (expected s3://bucket/prefix)")
    rest = text[len(SCHEME):]
    if any(ch in rest for ch in "?#\\") or any(ord(ch) < 32 for ch in rest):
        raise ValueError(f"S3 target {target!r}: no query, fragment, backslash or control "
                         "characters allowed (expected s3://bucket/prefix)")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"S3 target {target!r} names no bucket (expected s3://bucket/prefix)")
    if not _BUCKET.match(bucket) or ".." in bucket or _IPV4.match(bucket):
        raise ValueError(f"S3 target {target!r}: {bucket!r} is not a valid bucket name "
                         "(3-63 lowercase letters, digits, '.' and '-', starting and ending "
                         "with a letter or digit)")
    prefix = prefix.strip("/")
    if prefix:
        _check_relative(prefix, f"S3 target {target!r}: prefix")
    return S3Target(bucket, prefix)


def _check_relative(path: str, what: str) -> None:
    parts = path.split("/")
    if path.startswith("/") or "\\" in path or any(p in {"", ".", ".."} for p in parts):
        raise ValueError(f"{what} {path!r} must be a relative path without empty, '.' or '..' "
                         "segments")


def content_type(path: str) -> str:
    """The Content-Type for a file, by extension; unknown extensions fall back to mimetypes."""
    suffix = _suffix(path)
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path, strict=False)
    if guessed is None:
        return FALLBACK_CONTENT_TYPE
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


def cache_control(path: str) -> str:
    """Long for static assets; short for pages, data and descriptors, which revisions change."""
    return LONG_CACHE if _suffix(path) in LONG_CACHE_SUFFIXES else SHORT_CACHE


def upload_phases(paths: Iterable[str]) -> list[list[str]]:
    """The order of uploads: a phase starts once the one before it is complete.

    First every file that links to nothing, then ``datapackage.json``, the catalog
    ``data.json`` and HTML pages by depth, deepest first, so the top-level ``index.html`` (and
    ``data.json``) go last.
    """
    plain: list[str] = []
    linking: dict[int, list[str]] = {}
    for path in sorted(paths):
        name = path.rsplit("/", 1)[-1]
        if _suffix(path) in HTML_SUFFIXES or name == DESCRIPTOR_NAME or path == CATALOG:
            linking.setdefault(path.count("/"), []).append(path)
        else:
            plain.append(path)
    phases = [plain] if plain else []
    phases.extend(linking[depth] for depth in sorted(linking, reverse=True))
    return phases


def _suffix(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def publish_tree(files: Mapping[str, bytes], target: str, *, endpoint_url: str | None = None,
                 region: str | None = None, max_workers: int = MAX_WORKERS,
                 client: Any = None) -> UploadSummary:
    """Upload ``files`` (relative path -> bytes) under ``target``; unchanged objects are skipped.

    ``endpoint_url`` points at an S3-compatible store (path-style addressing is then used, which
    such stores expect); ``region`` defaults to the AWS configuration's. Raises ValueError for a
    bad target or path and :class:`PublishError` when the store cannot be reached or refuses.
    """
    parsed = parse_s3_target(target)
    for path in files:
        _check_relative(path, "file path")
    s3 = client or _client(endpoint_url, region)
    where = f"{parsed} at {endpoint_url or 'AWS S3'}"

    def changed(path: str) -> bool:
        return _needs_upload(s3, parsed, path, files[path], where)

    def upload(path: str) -> None:
        _put(s3, parsed, path, files[path], where)

    with ThreadPoolExecutor(max_workers=max(1, max_workers),
                            thread_name_prefix="s3-publish") as pool:
        paths = sorted(files)
        flags = _run_all(pool, changed, paths)
        to_upload = {path for path, flag in zip(paths, flags, strict=True) if flag}
        for phase in upload_phases(to_upload):
            _run_all(pool, upload, phase)

    summary = UploadSummary(
        target=str(parsed),
        uploaded=tuple(sorted(to_upload)),
        unchanged=tuple(p for p in paths if p not in to_upload),
        bytes_uploaded=sum(len(files[p]) for p in to_upload),
    )
    log.info("published %s", summary, extra={"target": summary.target,
                                              "uploaded": len(summary.uploaded),
                                              "unchanged": len(summary.unchanged)})
    return summary


def read_object(target: str, path: str, *, endpoint_url: str | None = None,
                region: str | None = None, client: Any = None) -> bytes | None:
    """The bytes of ``path`` under ``target``, or None when there is no such object."""
    parsed = parse_s3_target(target)
    _check_relative(path, "file path")
    s3 = client or _client(endpoint_url, region)
    key = parsed.key(path)
    try:
        body: bytes = s3.get_object(Bucket=parsed.bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            return None
        raise _publish_error(exc, "GET", key, f"{parsed} at {endpoint_url or 'AWS S3'}") from exc
    except BotoCoreError as exc:
        raise _publish_error(exc, "GET", key, f"{parsed} at {endpoint_url or 'AWS S3'}") from exc
    return body


def create_object(target: str, path: str, body: bytes, *, endpoint_url: str | None = None,
                  region: str | None = None, client: Any = None) -> bool:
    """Put ``path`` under ``target`` only if no object is there (``If-None-Match: *``); False
    when one is. A store that does not know conditional writes gets a plain PUT."""
    parsed = parse_s3_target(target)
    _check_relative(path, "file path")
    s3 = client or _client(endpoint_url, region)
    key, where = parsed.key(path), f"{parsed} at {endpoint_url or 'AWS S3'}"
    put = dict(Bucket=parsed.bucket, Key=key, Body=body, ContentType=content_type(path),
               CacheControl=cache_control(path), Metadata={SHA256_METADATA: _sha256(body)})
    try:
        s3.put_object(IfNoneMatch="*", **put)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in {"PreconditionFailed", "ConditionalRequestConflict"} or _status(exc) == 412:
            return False
        if code != "NotImplemented":
            raise _publish_error(exc, "PUT", key, where) from exc
        try:
            s3.put_object(**put)
        except (ClientError, BotoCoreError) as again:
            raise _publish_error(again, "PUT", key, where) from again
    except BotoCoreError as exc:
        raise _publish_error(exc, "PUT", key, where) from exc
    return True


def _client(endpoint_url: str | None, region: str | None) -> Any:
    config = Config(connect_timeout=5, read_timeout=30,
                    retries={"mode": "standard", "total_max_attempts": 3},
                    s3={"addressing_style": "path" if endpoint_url else "auto"})
    # A session of its own: boto3's default session is not safe to share across threads.
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None,
                                          region_name=region or None, config=config)


def _run_all(pool: ThreadPoolExecutor, fn: Callable[[str], T], paths: list[str]) -> list[T]:
    """``fn`` over ``paths`` on the pool, in order; on the first failure the rest is cancelled."""
    futures = [pool.submit(fn, path) for path in paths]
    try:
        return [future.result() for future in futures]
    except BaseException:
        for future in futures:
            future.cancel()
        raise


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _needs_upload(s3: Any, target: S3Target, path: str, body: bytes, where: str) -> bool:
    key = target.key(path)
    try:
        head = s3.head_object(Bucket=target.bucket, Key=key)
    except ClientError as exc:
        # 404: no such object (or bucket: the PUT then says which). 403: S3 answers a HEAD of a
        # missing key with 403 when the caller may not list the bucket; the PUT decides.
        if _status(exc) in {403, 404}:
            return True
        raise _publish_error(exc, "HEAD", key, where) from exc
    except BotoCoreError as exc:
        raise _publish_error(exc, "HEAD", key, where) from exc
    return not (
        head.get("Metadata", {}).get(SHA256_METADATA) == _sha256(body)
        and head.get("ContentLength") == len(body)
        and head.get("ContentType") == content_type(path)
        and head.get("CacheControl") == cache_control(path)
    )


def _put(s3: Any, target: S3Target, path: str, body: bytes, where: str) -> None:
    key = target.key(path)
    try:
        s3.put_object(
            Bucket=target.bucket, Key=key, Body=body,
            ContentType=content_type(path), CacheControl=cache_control(path),
            ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode("ascii"),
            Metadata={SHA256_METADATA: _sha256(body)},
        )
    except (ClientError, BotoCoreError) as exc:
        raise _publish_error(exc, "PUT", key, where) from exc


def _status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def _publish_error(exc: Exception, operation: str, key: str, where: str) -> PublishError:
    if isinstance(exc, NoCredentialsError):
        return PublishError(f"publishing to {where}: no AWS credentials (set AWS_ACCESS_KEY_ID "
                            "and AWS_SECRET_ACCESS_KEY, or run with a role)")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", str(_status(exc))), error.get("Message", "")
        if code == "NoSuchBucket":
            return PublishError(f"publishing to {where}: the bucket does not exist")
        if code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}:
            return PublishError(f"publishing to {where}: {operation} {key} refused ({code}): "
                                f"check the credentials and the bucket policy. {message}".strip())
        return PublishError(f"publishing to {where}: {operation} {key} failed: {code} {message}"
                            .strip())
    return PublishError(f"publishing to {where}: cannot reach the S3 service "
                        f"({type(exc).__name__}: {exc})")
