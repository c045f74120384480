#!/opt/moto/bin/python3
"""`mc` in nyc311-s3:local: the few MinIO client commands docker-compose.yml runs, on boto3.

    mc ready ALIAS                         exit 0 when the S3 API at ALIAS answers, 1 otherwise
    mc alias set NAME URL ACCESS SECRET    remember a server (checked once it is stored)
    mc mb [--ignore-existing] ALIAS/BUCKET make a bucket (an existing one is fine with the flag)
    mc anonymous set download ALIAS/BUCKET[/PREFIX]
                                           let anyone GET the objects (a bucket policy)

The minio service's healthcheck is `mc ready local`; minio-setup runs `alias set`, `mb` and
`anonymous set download`. The alias `local` is http://127.0.0.1:9000 with MINIO_ROOT_USER and
MINIO_ROOT_PASSWORD (minioadmin when unset, as MinIO's), unless one of that name is set. Aliases
are kept in $MC_CONFIG_DIR/config.json (default ~/.mc/config.json), in mc's own layout. Any other
command is refused with exit code 2. `ready` tries once, with short timeouts, where MinIO's mc
waits: a healthcheck is retried by Docker.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

USAGE = __doc__.split("\n\n")[1]
LOCAL = "http://127.0.0.1:9000"


class Usage(Exception):
    """A command line this mc does not know (exit code 2)."""


class Failure(Exception):
    """A command that could not do its work (exit code 1)."""


def config_file() -> Path:
    directory = os.environ.get("MC_CONFIG_DIR") or str(Path.home() / ".mc")
    return Path(directory) / "config.json"


def load_config() -> dict[str, Any]:
    path = config_file()
    if not path.exists():
        return {"version": "10", "aliases": {}}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Failure(f"cannot read {path}: {exc}") from exc
    config.setdefault("aliases", {})
    return config


def save_config(config: dict[str, Any]) -> None:
    path = config_file()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        part = path.with_suffix(".part")
        part.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        part.chmod(0o600)
        part.replace(path)
    except OSError as exc:
        raise Failure(f"cannot write {path}: {exc}") from exc


def alias(name: str) -> dict[str, str]:
    aliases = load_config()["aliases"]
    if name in aliases:
        return dict(aliases[name])
    if name == "local":
        return {"url": LOCAL, "accessKey": os.environ.get("MINIO_ROOT_USER", "minioadmin"),
                "secretKey": os.environ.get("MINIO_ROOT_PASSWORD", "minioadmin")}
    raise Failure(f"no alias {name!r}: set one with `mc alias set {name} URL ACCESS SECRET`")


def client(server: dict[str, str], attempts: int = 3) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=2, read_timeout=5,
                    retries={"mode": "standard", "total_max_attempts": attempts},
                    s3={"addressing_style": "path"})
    return boto3.session.Session().client(
        "s3", endpoint_url=server["url"], aws_access_key_id=server["accessKey"],
        aws_secret_access_key=server["secretKey"], region_name="us-east-1", config=config)


def target(text: str) -> tuple[str, str, str]:
    """ALIAS/BUCKET[/PREFIX] -> (alias, bucket, prefix)."""
    name, _, rest = text.partition("/")
    bucket, _, prefix = rest.partition("/")
    if not name or not bucket:
        raise Usage(f"{text!r} is not ALIAS/BUCKET")
    return name, bucket, prefix.strip("/")


def error_of(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        return f"{response['Error'].get('Code')}: {response['Error'].get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


def ready(args: list[str]) -> None:
    if len(args) != 1:
        raise Usage("mc ready ALIAS")
    server = alias(args[0])
    try:
        client(server, attempts=1).list_buckets()
    except Exception as exc:
        raise Failure(f"The cluster is not ready ({error_of(exc)})") from exc
    print("The cluster is ready")


def alias_set(args: list[str]) -> None:
    if len(args) != 4:
        raise Usage("mc alias set NAME URL ACCESS SECRET")
    name, url, access, secret = args
    if not url.startswith(("http://", "https://")):
        raise Usage(f"{url!r} is not an http:// or https:// URL")
    server = {"url": url.rstrip("/"), "accessKey": access, "secretKey": secret, "api": "s3v4",
              "path": "auto"}
    try:
        client(server).list_buckets()
    except Exception as exc:
        raise Failure(f"{url} does not answer as an S3 server ({error_of(exc)})") from exc
    config = load_config()
    config["aliases"][name] = server
    save_config(config)
    print(f"Added `{name}` successfully.")


def make_bucket(args: list[str]) -> None:
    ignore_existing = "--ignore-existing" in args or "-p" in args
    rest = [arg for arg in args if arg not in {"--ignore-existing", "-p"}]
    if len(rest) != 1 or rest[0].startswith("-"):
        raise Usage("mc mb [--ignore-existing] ALIAS/BUCKET")
    name, bucket, prefix = target(rest[0])
    if prefix:
        raise Usage(f"{rest[0]!r}: mb makes a bucket, ALIAS/BUCKET")
    s3 = client(alias(name))
    # S3 in us-east-1 (and moto) answers 200 to creating a bucket one owns already: ask first.
    try:
        s3.head_bucket(Bucket=bucket)
        exists = True
    except Exception as exc:
        if getattr(exc, "response", {}).get("Error", {}).get("Code") not in {"404", "NoSuchBucket"}:
            raise Failure(f"cannot look up the bucket `{name}/{bucket}` ({error_of(exc)})") from exc
        exists = False
    if exists and not ignore_existing:
        raise Failure(f"the bucket `{name}/{bucket}` exists already")
    if not exists:
        try:
            s3.create_bucket(Bucket=bucket)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if not (ignore_existing and code in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}):
                raise Failure(f"cannot make the bucket `{name}/{bucket}` "
                              f"({error_of(exc)})") from exc
    print(f"Bucket created successfully `{name}/{bucket}`." if not exists
          else f"Bucket `{name}/{bucket}` exists already.")


def anonymous_set(args: list[str]) -> None:
    if len(args) != 2 or args[0] != "download":
        raise Usage("mc anonymous set download ALIAS/BUCKET[/PREFIX] (no other permission here)")
    name, bucket, prefix = target(args[1])
    objects = f"arn:aws:s3:::{bucket}/{prefix + '/' if prefix else ''}*"
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetBucketLocation"],
         "Resource": [f"arn:aws:s3:::{bucket}"]},
        {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetObject"],
         "Resource": [objects]},
    ]}
    try:
        client(alias(name)).put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    except Exception as exc:
        raise Failure(f"cannot set the policy of `{name}/{bucket}` ({error_of(exc)})") from exc
    print(f"Access permission for `{args[1]}` is set to `download`")


def main(argv: list[str]) -> int:
    commands = {("ready",): ready, ("alias", "set"): alias_set, ("mb",): make_bucket,
                ("anonymous", "set"): anonymous_set}
    if argv[:1] in (["-h"], ["--help"], ["help"]):
        print(USAGE)
        return 0
    try:
        for words, command in commands.items():
            if tuple(argv[:len(words)]) == words:
                command(argv[len(words):])
                return 0
        raise Usage(f"unknown command `mc {' '.join(argv)}`" if argv else "no command given")
    except Usage as exc:
        print(f"mc: usage: {exc}\n\nThis mc knows only:\n{USAGE}", file=sys.stderr)
        return 2
    except Failure as exc:
        print(f"mc: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
