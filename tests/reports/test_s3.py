"""Publishing the site to S3, against a real S3-compatible server process (moto's)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import boto3
import pytest

from reports.s3 import (
    LONG_CACHE,
    SHORT_CACHE,
    PublishError,
    S3Target,
    cache_control,
    content_type,
    is_s3_target,
    parse_s3_target,
    publish_tree,
    upload_phases,
)
from tests.servers import Moto, free_port

pytestmark = pytest.mark.usefixtures("aws_env")

REGION = "us-east-1"

TREE: dict[str, bytes] = {
    "index.html": b"<!doctype html><title>NYC 311 metrics</title><a href='2026-10/'>October</a>",
    "2026-10/index.html": "<!doctype html><title>Octobre – 311</title>".encode(),
    "data/2026-10/requests_received.csv": (
        b"month,agency,agency_name,complaint_type,received\r\n"
        b"2026-10,HPD,Department of Housing Preservation and Development,HEAT/HOT WATER,4211\r\n"
    ),
    "data/2026-10/datapackage.json": b'{"name": "nyc311-2026-10", "resources": []}',
    "assets/site.css": b"body { font-family: sans-serif; }\n",
    "assets/site.js": b"document.documentElement.classList.add('js');\n",
}

EXPECTED_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "2026-10/index.html": "text/html; charset=utf-8",
    "data/2026-10/requests_received.csv": "text/csv; charset=utf-8",
    "data/2026-10/datapackage.json": "application/json",
    "assets/site.css": "text/css",
    "assets/site.js": "text/javascript",
}


@pytest.fixture
def s3(moto_server: Moto) -> Any:
    return boto3.session.Session().client("s3", region_name=REGION,
                                          endpoint_url=moto_server.url)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"nyc311-site-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return name


def publish(moto_server: Moto, files: dict[str, bytes], target: str) -> Any:
    return publish_tree(files, target, endpoint_url=moto_server.url, region=REGION)


def test_publishes_every_file_with_its_headers(moto_server: Moto, s3: Any, bucket: str) -> None:
    summary = publish(moto_server, TREE, f"s3://{bucket}/site/")

    assert sorted(summary.uploaded) == sorted(TREE)
    assert summary.unchanged == ()
    assert summary.bytes_uploaded == sum(len(b) for b in TREE.values())
    assert summary.target == f"s3://{bucket}/site/"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {f"site/{path}" for path in TREE}
    for path, body in TREE.items():
        got = s3.get_object(Bucket=bucket, Key=f"site/{path}")
        assert got["Body"].read() == body, path
        assert got["ContentType"] == EXPECTED_TYPES[path], path
        expected_cache = LONG_CACHE if path.startswith("assets/") else SHORT_CACHE
        assert got["CacheControl"] == expected_cache, path
        assert got["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest(), path


def versions(s3: Any, bucket: str) -> dict[str, int]:
    """How many times each key was written: the bucket keeps every version."""
    counts: dict[str, int] = {}
    for version in s3.list_object_versions(Bucket=bucket).get("Versions", []):
        counts[version["Key"]] = counts.get(version["Key"], 0) + 1
    return counts


def test_republishing_is_idempotent_and_sends_only_what_changed(
        moto_server: Moto, s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    target = f"s3://{bucket}"  # the bucket's root
    publish(moto_server, TREE, target)

    again = publish(moto_server, TREE, target)
    assert again.uploaded == ()
    assert sorted(again.unchanged) == sorted(TREE)
    assert again.bytes_uploaded == 0
    assert versions(s3, bucket) == dict.fromkeys(TREE, 1)

    revised = dict(TREE)
    revised["data/2026-10/requests_received.csv"] = TREE[
        "data/2026-10/requests_received.csv"].replace(b"4211", b"4212")
    third = publish(moto_server, revised, target)
    assert third.uploaded == ("data/2026-10/requests_received.csv",)
    assert len(third.unchanged) == len(TREE) - 1
    assert versions(s3, bucket) == {**dict.fromkeys(TREE, 1),
                                    "data/2026-10/requests_received.csv": 2}
    got = s3.get_object(Bucket=bucket, Key="data/2026-10/requests_received.csv")
    assert got["Body"].read().endswith(b",4212\r\n")


def test_an_object_changed_by_someone_else_is_replaced(
        moto_server: Moto, s3: Any, bucket: str) -> None:
    publish(moto_server, TREE, f"s3://{bucket}/p")
    s3.put_object(Bucket=bucket, Key="p/assets/site.css", Body=TREE["assets/site.css"],
                  ContentType="application/octet-stream")  # same bytes, wrong headers
    s3.put_object(Bucket=bucket, Key="p/index.html", Body=b"defaced", ContentType="text/html")

    summary = publish(moto_server, TREE, f"s3://{bucket}/p")
    assert summary.uploaded == ("assets/site.css", "index.html")
    css = s3.get_object(Bucket=bucket, Key="p/assets/site.css")
    assert css["ContentType"] == "text/css"
    assert s3.get_object(Bucket=bucket, Key="p/index.html")["Body"].read() == TREE["index.html"]


def test_pages_go_after_the_files_they_link_to() -> None:
    assert upload_phases(TREE) == [
        ["assets/site.css", "assets/site.js", "data/2026-10/requests_received.csv"],
        ["data/2026-10/datapackage.json"],
        ["2026-10/index.html"],
        ["index.html"],
    ]
    assert upload_phases([]) == []
    assert upload_phases(["index.html"]) == [["index.html"]]
    # the catalog links to every month's files: it goes with the top-level index, last
    assert upload_phases([*TREE, "data.json"])[-1] == ["data.json", "index.html"]


@pytest.mark.parametrize(("path", "expected"), [
    ("a/b.HTML", "text/html; charset=utf-8"),
    ("logo.svg", "image/svg+xml"),
    ("chart.png", "image/png"),
    ("fonts/x.woff2", "font/woff2"),
    ("notes.txt", "text/plain; charset=utf-8"),
    ("README", "application/octet-stream"),
    ("archive.unknownext", "application/octet-stream"),
    (".hidden", "application/octet-stream"),
])
def test_content_types(path: str, expected: str) -> None:
    assert content_type(path) == expected


def test_cache_control_is_short_for_pages_and_data() -> None:
    assert cache_control("index.html") == SHORT_CACHE
    assert cache_control("data/2026-10/closure_rates.csv") == SHORT_CACHE
    assert cache_control("data/2026-10/datapackage.json") == SHORT_CACHE
    assert cache_control("assets/logo.svg") == LONG_CACHE


@pytest.mark.parametrize(("text", "expected"), [
    ("s3://nyc311-site", S3Target("nyc311-site", "")),
    ("s3://nyc311-site/", S3Target("nyc311-site", "")),
    ("s3://nyc311-site/public/metrics/", S3Target("nyc311-site", "public/metrics")),
    (" s3://my.bucket-1/x ", S3Target("my.bucket-1", "x")),
])
def test_parse_target(text: str, expected: S3Target) -> None:
    assert parse_s3_target(text) == expected
    assert is_s3_target(text)


@pytest.mark.parametrize("bad", [
    "s3://", "s3:///prefix", "s3://Nyc311-Site/x", "s3://ab", "s3://under_score",
    "s3://-leading", "s3://a..b", "s3://192.168.0.1", "s3://bucket/a//b", "s3://bucket/../x",
    "s3://bucket/x?versionId=1", "s3://bucket/x#y", "http://bucket/x", "bucket/x",
])
def test_a_bad_target_is_refused_before_any_request(bad: str) -> None:
    with pytest.raises(ValueError, match=r"S3 target|not an S3 target"):
        publish_tree(TREE, bad, endpoint_url="http://127.0.0.1:9")


@pytest.mark.parametrize("bad", ["/index.html", "../index.html", "a//b.css", "a\\b.css", ""])
def test_a_bad_file_path_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="file path"):
        publish_tree({bad: b"x"}, "s3://nyc311-site", endpoint_url="http://127.0.0.1:9")


def test_is_s3_target() -> None:
    assert is_s3_target("S3://Bad_Bucket")  # still S3: parse_s3_target says what is wrong
    assert not is_s3_target("site/out")
    assert not is_s3_target("/var/www/s3://x")


def test_a_server_that_is_down_is_a_clear_error() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(PublishError, match="cannot reach the S3 service") as caught:
        publish_tree(TREE, "s3://nyc311-site/x", endpoint_url=endpoint, region=REGION)
    assert endpoint in str(caught.value)
    assert "s3://nyc311-site/x/" in str(caught.value)


def test_a_missing_bucket_is_a_clear_error(moto_server: Moto) -> None:
    with pytest.raises(PublishError, match="the bucket does not exist"):
        publish(moto_server, TREE, f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/")


def test_an_empty_tree_publishes_nothing(moto_server: Moto, s3: Any, bucket: str) -> None:
    summary = publish(moto_server, {}, f"s3://{bucket}/")
    assert (summary.uploaded, summary.unchanged, summary.bytes_uploaded) == ((), (), 0)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
