"""Settings: strict casting, named keys in errors, secrets hidden, the env file fallback."""

from __future__ import annotations

import pytest

from nyc311.settings import SettingsError, load_settings

BASE = {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "DATABASE_URL": "postgresql://u:s3cret@h:5432/d"}


@pytest.fixture(autouse=True)
def no_env_file(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NYC311_ENV_FILE", raising=False)


def test_defaults_and_urls():
    s = load_settings(BASE)
    assert s.batch_size == 5000 and s.db_schema == "nyc311" and s.topic_prefix == ""
    assert s.sqlalchemy_url == "postgresql+psycopg://u:s3cret@h:5432/d"
    assert s.libpq_url == "postgresql://u:s3cret@h:5432/d"
    assert s.topic("nyc311.request-created") == "nyc311.request-created"


def test_secrets_are_not_in_repr():
    assert "s3cret" not in repr(load_settings(BASE))
    assert "u:***@h" in repr(load_settings(BASE))


def test_missing_keys_are_named():
    with pytest.raises(SettingsError, match=r"DATABASE_URL.*make services-up"):
        load_settings({"KAFKA_BOOTSTRAP_SERVERS": "k:9092"})


@pytest.mark.parametrize("key,value,match", [
    ("NYC311_BATCH_SIZE", "many", "NYC311_BATCH_SIZE: expected a whole number"),
    ("NYC311_BATCH_SIZE", "0", "NYC311_BATCH_SIZE: must be at least 1"),
    ("NYC311_BATCH_TIMEOUT", "-1", "NYC311_BATCH_TIMEOUT: must not be negative"),
    ("NYC311_DB_SCHEMA", "x; DROP TABLE", "NYC311_DB_SCHEMA"),
    ("DATABASE_URL", "mysql://x/y", None),
])
def test_bad_values_are_refused_with_the_key(key, value, match):
    if match is None:
        with pytest.raises(SettingsError, match="DATABASE_URL"):
            _ = load_settings({**BASE, key: value}).sqlalchemy_url
    else:
        with pytest.raises(SettingsError, match=match):
            load_settings({**BASE, key: value})


def test_env_file_fills_unset_keys_only(tmp_path, monkeypatch):
    (tmp_path / ".env.services").write_text(
        "# written by make services-up\nKAFKA_BOOTSTRAP_SERVERS=file:1\nDATABASE_URL=postgresql://f/db\n")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    s = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "env:2"})
    assert s.kafka_bootstrap_servers == "env:2"  # the environment wins
    assert s.database_url == "postgresql://f/db"  # the file fills the gap


def test_malformed_env_file_names_the_line(tmp_path):
    (tmp_path / ".env.services").write_text("KAFKA_BOOTSTRAP_SERVERS\n")
    with pytest.raises(SettingsError, match=r"\.env\.services:1"):
        load_settings({})


def test_librdkafka_passthrough():
    s = load_settings({**BASE, "KAFKA_SECURITY_PROTOCOL": "SSL",
                       "KAFKA_SSL_CA_LOCATION": "/ca.pem",
                       "KAFKA_SASL_OAUTHBEARER_CONFIG": "x"})
    config = s.kafka_config(**{"group.id": "g"})
    assert config["security.protocol"] == "SSL"
    assert config["ssl.ca.location"] == "/ca.pem"
    assert config["bootstrap.servers"] == "k:9092" and config["group.id"] == "g"


def test_the_site_url_is_absolute_and_ends_with_a_slash():
    assert load_settings(BASE).site_url == ""  # unknown: data.json's links stay relative
    s = load_settings({**BASE, "NYC311_SITE_URL": "https://data.example.org/311"})
    assert s.site_url == "https://data.example.org/311/"
    assert load_settings({**BASE, "NYC311_SITE_URL": "http://h/"}).site_url == "http://h/"
    for bad in ("data.example.org/311", "ftp://h/", "https:///311", "https://h/?x=1", "/311/"):
        with pytest.raises(SettingsError, match="NYC311_SITE_URL: expected an absolute"):
            load_settings({**BASE, "NYC311_SITE_URL": bad})


def test_the_data_contact_is_an_email_address():
    assert load_settings(BASE).data_contact_email == "opendata@311.nyc.gov"
    s = load_settings({**BASE, "NYC311_DATA_CONTACT_EMAIL": "data-team@example.org"})
    assert s.data_contact_email == "data-team@example.org"
    with pytest.raises(SettingsError, match="NYC311_DATA_CONTACT_EMAIL"):
        load_settings({**BASE, "NYC311_DATA_CONTACT_EMAIL": "mailto:x@y.z"})
