"""One frozen, typed settings object, read from the environment once.

Every service, command and test reads its configuration through :func:`load_settings`. Values
come from environment variables; ``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` fall back to
the ``.env.services`` file that ``make services-up`` writes (looked up in the working directory
and its parents, or at ``NYC311_ENV_FILE``), so a developer who started the local services never
has to export anything. Variables that are set always win over the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV_FILE_NAME = ".env.services"
#: Who answers questions about the published data: data.json's contactPoint.
DATA_CONTACT_EMAIL = "opendata@311.nyc.gov"


class SettingsError(ValueError):
    """A setting is missing or has a value that cannot be used; the message names the key."""


# name -> (default, help). The CLI prints this table in --help, so it is the one place to document a
# setting.
DOCUMENTED: dict[str, tuple[str | None, str]] = {
    "KAFKA_BOOTSTRAP_SERVERS": (None, "Kafka bootstrap servers, host:port[,host:port]"),
    "DATABASE_URL": (None, "PostgreSQL URL, e.g. postgresql://user:pw@host:5432/db"),
    "NYC311_DB_SCHEMA": ("nyc311", "PostgreSQL schema that holds the projection"),
    "NYC311_PUBLISHED_SCHEMA": ("published for nyc311, else <NYC311_DB_SCHEMA>_published",
                                "PostgreSQL schema of this projection's monthly publication"),
    "NYC311_TOPIC_PREFIX": ("", "prefix for every topic and consumer group name"),
    "NYC311_BATCH_SIZE": ("5000", "records a consumer takes per batch (one transaction)"),
    "NYC311_BATCH_TIMEOUT": ("0.5", "seconds a consumer waits to fill a batch"),
    "NYC311_STALL_SECONDS": ("60", "seconds a consumer may go without progress on the work in "
                             "hand (database, dead-letter queue) before /healthz says stalled"),
    "SCHEMA_REGISTRY_URL": ("", "Confluent Schema Registry, to decode records in its wire format"),
    "NYC311_LOG_LEVEL": ("INFO", "log level: DEBUG, INFO, WARNING, ERROR"),
    "NYC311_ENV_FILE": ("", "file with KEY=VALUE lines read for unset variables"),
    "NYC311_SURVEY_SECRET": ("", "key that signs survey links (16+ characters; keep secret)"),
    "NYC311_SURVEY_BASE_URL": ("http://127.0.0.1:8311", "public address of the survey page"),
    "NYC311_SURVEY_TOKEN_DAYS": ("30", "days a survey link stays valid"),
    "NYC311_SURVEY_OUTBOX_MAX_AGE": ("300", "seconds an answer may wait in the survey page's "
                                     "outbox for Kafka before /healthz says not ready"),
    "NYC311_CONTACT_WAIT_HOURS": ("24", "how long a closure waits for its request's contact"),
    "NYC311_CONTACT_RETENTION_DAYS": ("45", "days a contact is kept after its survey was sent (or "
                                      "could not be); then its key is destroyed"),
    "NYC311_CONTACT_MAX_OPEN_DAYS": ("90", "days after which a request never closed no longer "
                                     "holds its contact (the retention counts from then)"),
    "NYC311_SURVEY_MAX_CLOSURE_AGE_DAYS": ("7", "closures older than this get no survey "
                                           "(counted too_old): a backfill surveys no one late"),
    "NYC311_VAULT_SCHEMA": ("<NYC311_DB_SCHEMA>_vault", "PostgreSQL schema of the contact keys "
                            "(outside the projection, so rebuilds keep it)"),
    "NYC311_PURGE_INTERVAL": ("3600", "seconds between runs of `nyc311 run privacy-purge`"),
    "NYC311_SEND_ATTEMPTS": ("6", "send attempts before a survey is recorded as failed"),
    "NYC311_SEND_CONCURRENCY": ("8", "surveys the dispatcher sends at once"),
    "SMTP_HOST": ("", "mail server for email surveys (empty: no email channel)"),
    "SMTP_PORT": ("587", "mail server port"),
    "SMTP_STARTTLS": ("true", "upgrade the SMTP connection with STARTTLS (true/false)"),
    "SMTP_USERNAME": ("", "SMTP login (empty: no AUTH)"),
    "SMTP_PASSWORD": ("", "SMTP password"),
    "SMTP_FROM": ("NYC 311 <surveys@311.nyc.gov>", "From: of survey emails"),
    "SMS_PROVIDER": ("sns", "SMS provider: sns, or none to send no SMS"),
    "AWS_REGION": ("us-east-1", "region for Amazon SNS and S3 (credentials: the usual AWS "
                   "variables)"),
    "AWS_ENDPOINT_URL_SNS": ("", "SNS endpoint override (an SNS-compatible service)"),
    "NYC311_METRICS_PORT": ("0", "port of /metrics and /healthz for `nyc311 run ...` services "
                            "(0: off)"),
    "NYC311_PROJECTOR_PROCESSES": ("1", "worker processes of `nyc311 run projector` (one per core "
                                   "catches up fastest); also `--processes`"),
    "NYC311_PUBLISH_TARGET": ("site", "where the aggregator publishes: a folder or s3://bucket/prefix"),
    "NYC311_PUBLISH_AT": ("06:00", "time of day (New York) the aggregator publishes on the 1st"),
    "AWS_ENDPOINT_URL_S3": ("", "S3 endpoint override (an S3-compatible service such as MinIO)"),
    "NYC311_SITE_URL": ("", "public address of the published site, e.g. "
                        "https://data.example.org/311/; empty: data.json's links are relative "
                        "(portals cannot harvest them)"),
    "NYC311_DATA_CONTACT_EMAIL": (DATA_CONTACT_EMAIL, "who answers questions about the published "
                                  "data (data.json's contact point)"),
    "KAFKA_<NAME>": ("", "any other librdkafka setting, e.g. KAFKA_SECURITY_PROTOCOL=SSL "
                     "(dots as _, a literal _ as __)"),
}

_KAFKA_PASSTHROUGH_EXCLUDED = {"KAFKA_BOOTSTRAP_SERVERS"}
#: What DCAT-US accepts in a contact point's hasEmail (mailto: and this).
_EMAIL = re.compile(r"[\w.-]+@[\w.-]+\.[\w.-]+")


def find_env_file(start: Path | None = None) -> Path | None:
    """The ``.env.services`` in ``start`` (default: the working directory) or nearest parent."""
    explicit = os.environ.get("NYC311_ENV_FILE")
    if explicit:
        path = Path(explicit)
        return path if path.is_file() else None
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / ENV_FILE_NAME
        if candidate.is_file():
            return candidate
    return None


def read_env_file(path: Path) -> dict[str, str]:
    """Parse ``KEY=VALUE`` lines; blank lines and ``#`` comments are skipped."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def _redact_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


@dataclass(frozen=True)
class Settings:
    """Configuration of every nyc311 process. Build it with :func:`load_settings`."""

    kafka_bootstrap_servers: str
    database_url: str = field(repr=False)
    db_schema: str = "nyc311"
    topic_prefix: str = ""
    batch_size: int = 5000
    batch_timeout: float = 0.5
    stall_seconds: float = 60.0
    schema_registry_url: str = ""
    log_level: str = "INFO"
    kafka_extra: Mapping[str, str] = field(default_factory=dict, repr=False)
    survey_secret: str = field(default="", repr=False)
    survey_base_url: str = "http://127.0.0.1:8311"
    survey_token_days: int = 30
    survey_outbox_max_age: float = 300.0
    contact_wait_hours: int = 24
    contact_retention_days: int = 45
    contact_max_open_days: int = 90
    survey_max_closure_age_days: int = 7
    vault_schema: str = "nyc311_vault"
    purge_interval: float = 3600.0
    send_attempts: int = 6
    send_concurrency: int = 8
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_from: str = "NYC 311 <surveys@311.nyc.gov>"
    sms_provider: str = "sns"
    aws_region: str = "us-east-1"
    sns_endpoint_url: str = ""
    publish_target: str = "site"
    publish_at: str = "06:00"
    s3_endpoint_url: str = ""
    #: The site's public address, ending in "/"; empty: unknown (data.json's links stay relative).
    site_url: str = ""
    data_contact_email: str = DATA_CONTACT_EMAIL
    #: NYC311_PUBLISHED_SCHEMA when set; empty: derived from db_schema (see published_schema).
    published_schema_override: str = ""

    @property
    def published_schema(self) -> str:
        """The schema that holds this projection's monthly publication: each projection
        publishes into its own (``published_schema_for``), so two projections in one database
        never share revisions. A rebuild keeps the live projection's (it sets the override
        for the fresh schema it fills)."""
        return self.published_schema_override or published_schema_for(self.db_schema)

    def require_survey_secret(self) -> str:
        if len(self.survey_secret) < 16:
            raise SettingsError("NYC311_SURVEY_SECRET: must be set to 16 or more characters "
                                "(it signs survey links)")
        return self.survey_secret

    def __repr__(self) -> str:  # secrets never reach a log line
        return (
            f"Settings(kafka_bootstrap_servers={self.kafka_bootstrap_servers!r}, "
            f"database_url={_redact_url(self.database_url)!r}, db_schema={self.db_schema!r}, "
            f"topic_prefix={self.topic_prefix!r}, batch_size={self.batch_size}, "
            f"batch_timeout={self.batch_timeout})"
        )

    def topic(self, name: str) -> str:
        """The full topic name for a contract name such as ``nyc311.request-created``."""
        return f"{self.topic_prefix}{name}"

    def group(self, name: str) -> str:
        """The consumer group id for a contract group name: prefixed like the topics, so two
        environments (or two test runs) on one cluster never share a group."""
        return f"{self.topic_prefix}{name}"

    def kafka_config(self, **overrides: Any) -> dict[str, Any]:
        """The librdkafka configuration dict: the one place it is built."""
        config: dict[str, Any] = {"bootstrap.servers": self.kafka_bootstrap_servers}
        config.update(self.kafka_extra)
        config.update(overrides)
        return config

    @property
    def sqlalchemy_url(self) -> str:
        """DATABASE_URL with the psycopg 3 driver named, as SQLAlchemy wants it."""
        url = self.database_url
        for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        raise SettingsError(f"DATABASE_URL: expected a postgresql:// URL, got {_redact_url(url)!r}")

    @property
    def libpq_url(self) -> str:
        """DATABASE_URL as libpq (psycopg.connect) accepts it."""
        return "postgresql://" + self.sqlalchemy_url[len("postgresql+psycopg://"):]


def _int(env: Mapping[str, str], key: str, default: str, minimum: int = 1) -> int:
    raw = env.get(key, default)
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{key}: expected a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{key}: must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], key: str, default: str) -> float:
    raw = env.get(key, default)
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{key}: expected a number of seconds, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{key}: must not be negative, got {value}")
    return value


def _bool(env: Mapping[str, str], key: str, default: str) -> bool:
    raw = env.get(key, default).strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{key}: expected true or false, got {raw!r}")


def _identifier(env: Mapping[str, str], key: str, default: str) -> str:
    """A schema name: letters, digits and _, starting with a letter (it is quoted nowhere)."""
    value = env.get(key, default)
    if not value or not value.replace("_", "").isalnum() or not value[0].isalpha() \
            or not value.isascii() or len(value) > 63:
        raise SettingsError(f"{key}: expected a plain identifier, got {value!r}")
    return value


def _site_url(env: Mapping[str, str], key: str) -> str:
    """An absolute http(s) URL with a host, ending in "/" so file paths join onto it; or empty.

    data.json's download links must be absolute to be harvested, so a relative or schemeless
    value is refused rather than published as a broken link.
    """
    raw = env.get(key, "").strip()
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query or parts.fragment:
        raise SettingsError(f"{key}: expected an absolute http(s) URL such as "
                            f"https://data.example.org/311/, got {raw!r}")
    return raw if raw.endswith("/") else raw + "/"


def _email(env: Mapping[str, str], key: str, default: str) -> str:
    value = env.get(key, default).strip()
    if not _EMAIL.fullmatch(value):
        raise SettingsError(f"{key}: expected an email address such as {default}, got {value!r}")
    return value


def published_schema_for(db_schema: str) -> str:
    """``published`` for the default projection ``nyc311`` (the name it always had, which the
    analyst role's queries use), ``<db_schema>_published`` for any other."""
    return "published" if db_schema == "nyc311" else f"{db_schema}_published"


def _kafka_passthrough(env: Mapping[str, str]) -> dict[str, str]:
    extra: dict[str, str] = {}
    for key, value in env.items():
        if key.startswith("KAFKA_") and key not in _KAFKA_PASSTHROUGH_EXCLUDED:
            name = key[len("KAFKA_"):].lower().replace("__", "\0").replace("_", ".")
            extra[name.replace("\0", "_")] = value
    return extra


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read the environment (plus ``.env.services`` for unset keys) into :class:`Settings`."""
    env: dict[str, str] = dict(os.environ if environ is None else environ)
    env_file = find_env_file()
    if env_file is not None:
        for key, value in read_env_file(env_file).items():
            env.setdefault(key, value)

    missing = [key for key in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL") if not env.get(key)]
    if missing and not all(key.lower() in overrides for key in ("kafka_bootstrap_servers",
                                                                 "database_url")):
        raise SettingsError(
            f"{' and '.join(missing)} not set: export {'/'.join(missing)}, "
            f"or run `make services-up` to start local services and write {ENV_FILE_NAME}"
        )
    schema = _identifier(env, "NYC311_DB_SCHEMA", "nyc311")
    vault_schema = _identifier(env, "NYC311_VAULT_SCHEMA", f"{schema}_vault")
    log_level = env.get("NYC311_LOG_LEVEL", "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError(
            f"NYC311_LOG_LEVEL: expected DEBUG/INFO/WARNING/ERROR, got {log_level!r}")
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": env.get("KAFKA_BOOTSTRAP_SERVERS", ""),
        "database_url": env.get("DATABASE_URL", ""),
        "db_schema": schema,
        "topic_prefix": env.get("NYC311_TOPIC_PREFIX", ""),
        "batch_size": _int(env, "NYC311_BATCH_SIZE", "5000"),
        "batch_timeout": _float(env, "NYC311_BATCH_TIMEOUT", "0.5"),
        "stall_seconds": _float(env, "NYC311_STALL_SECONDS", "60"),
        "schema_registry_url": env.get("SCHEMA_REGISTRY_URL", ""),
        "log_level": log_level,
        "kafka_extra": _kafka_passthrough(env),
        "survey_secret": env.get("NYC311_SURVEY_SECRET", ""),
        "survey_base_url": env.get("NYC311_SURVEY_BASE_URL", "http://127.0.0.1:8311").rstrip("/"),
        "survey_token_days": _int(env, "NYC311_SURVEY_TOKEN_DAYS", "30"),
        "survey_outbox_max_age": _float(env, "NYC311_SURVEY_OUTBOX_MAX_AGE", "300"),
        "contact_wait_hours": _int(env, "NYC311_CONTACT_WAIT_HOURS", "24", minimum=0),
        "contact_retention_days": _int(env, "NYC311_CONTACT_RETENTION_DAYS", "45", minimum=0),
        "contact_max_open_days": _int(env, "NYC311_CONTACT_MAX_OPEN_DAYS", "90"),
        "survey_max_closure_age_days": _int(env, "NYC311_SURVEY_MAX_CLOSURE_AGE_DAYS", "7"),
        "vault_schema": vault_schema,
        "purge_interval": _float(env, "NYC311_PURGE_INTERVAL", "3600"),
        "send_attempts": _int(env, "NYC311_SEND_ATTEMPTS", "6"),
        "send_concurrency": _int(env, "NYC311_SEND_CONCURRENCY", "8"),
        "smtp_host": env.get("SMTP_HOST", ""),
        "smtp_port": _int(env, "SMTP_PORT", "587"),
        "smtp_starttls": _bool(env, "SMTP_STARTTLS", "true"),
        "smtp_username": env.get("SMTP_USERNAME", ""),
        "smtp_password": env.get("SMTP_PASSWORD", ""),
        "smtp_from": env.get("SMTP_FROM", "NYC 311 <surveys@311.nyc.gov>"),
        "sms_provider": env.get("SMS_PROVIDER", "sns").lower(),
        "aws_region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        "sns_endpoint_url": env.get("AWS_ENDPOINT_URL_SNS", ""),
        "publish_target": env.get("NYC311_PUBLISH_TARGET", "site"),
        "publish_at": env.get("NYC311_PUBLISH_AT", "06:00"),
        "s3_endpoint_url": env.get("AWS_ENDPOINT_URL_S3", ""),
        "site_url": _site_url(env, "NYC311_SITE_URL"),
        "data_contact_email": _email(env, "NYC311_DATA_CONTACT_EMAIL", DATA_CONTACT_EMAIL),
    }
    if schema == "published" or schema.endswith("_published"):
        raise SettingsError(f"NYC311_DB_SCHEMA: {schema!r}: published and names ending in "
                            "_published are kept for the publications' schemas")
    published = (_identifier(env, "NYC311_PUBLISHED_SCHEMA", "")
                 if env.get("NYC311_PUBLISHED_SCHEMA") else "")
    if (published or published_schema_for(schema)) in {schema, vault_schema}:
        raise SettingsError(f"NYC311_PUBLISHED_SCHEMA: {published!r} is the projection's or "
                            "the vault's schema; publish into a schema of its own")
    values["published_schema_override"] = published
    hour, _, minute = values["publish_at"].partition(":")
    if not (hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60):
        raise SettingsError(f"NYC311_PUBLISH_AT: expected HH:MM, got {values['publish_at']!r}")
    if values["sms_provider"] not in {"sns", "none"}:
        raise SettingsError(f"SMS_PROVIDER: expected sns or none, got {values['sms_provider']!r}")
    values.update(overrides)
    return Settings(**values)
