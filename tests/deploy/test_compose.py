"""docker-compose.yml stays consistent with itself and with README.md (no Docker needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
README = REPO / "README.md"
README_MARKER = "<!-- compose-services -->"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), (
        "docker-compose.yml needs a top-level `services:` mapping"
    )
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def readme_compose_services(text: str) -> set[str]:
    """Backticked words after the marker line, up to the next blank line."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == README_MARKER]
    assert len(starts) == 1, f"README.md must contain the line {README_MARKER!r} exactly once"
    names: set[str] = set()
    for line in lines[starts[0] + 1 :]:
        if not line.strip():
            break
        names.update(re.findall(r"`([^`\s]+)`", line))
    return names


def test_every_service_has_an_image_or_a_build(services: dict[str, dict[str, Any]]) -> None:
    missing = [
        name for name, spec in services.items() if not (spec.get("image") or spec.get("build"))
    ]
    assert not missing, f"services without image or build: {missing}"


def test_built_services_have_a_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    for name, spec in services.items():
        build = spec.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context = build.get("context", ".")
        dockerfile = build.get("dockerfile", "Dockerfile")
        assert (REPO / context / dockerfile).is_file(), f"{name}: no {context}/{dockerfile}"


@pytest.mark.parametrize("name", ["kafka", "postgres"])
def test_servers_have_healthchecks(services: dict[str, dict[str, Any]], name: str) -> None:
    assert name in services, f"docker-compose.yml has no {name!r} service"
    healthcheck = services[name].get("healthcheck") or {}
    assert healthcheck.get("test"), f"{name} needs a healthcheck with a test"
    assert not healthcheck.get("disable"), f"{name}'s healthcheck is disabled"


def test_dependencies_exist_and_can_be_waited_for(services: dict[str, dict[str, Any]]) -> None:
    for name, spec in services.items():
        depends_on = spec.get("depends_on") or {}
        if isinstance(depends_on, list):
            depends_on = {dep: {} for dep in depends_on}
        for dep, options in depends_on.items():
            assert dep in services, f"{name} depends on unknown service {dep!r}"
            condition = (options or {}).get("condition", "service_started")
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), (
                    f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck"
                )


def test_app_services_reach_kafka_and_postgres(services: dict[str, dict[str, Any]]) -> None:
    for name, spec in services.items():
        if not spec.get("build"):
            continue
        env = spec.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        assert env.get("KAFKA_BOOTSTRAP_SERVERS") == "kafka:9092", name
        assert str(env.get("DATABASE_URL", "")).startswith("postgresql://"), name


def test_readme_lists_the_compose_services(services: dict[str, dict[str, Any]]) -> None:
    listed = readme_compose_services(README.read_text(encoding="utf-8"))
    assert listed == set(services), (
        f"README.md ({README_MARKER}) lists {sorted(listed)}, "
        f"docker-compose.yml defines {sorted(services)}"
    )


def test_mounted_host_paths_exist(services: dict[str, dict[str, Any]]) -> None:
    """A bind mount of a path that is not in the repository starts the service with an empty
    directory where its configuration should be (a moved folder is caught here)."""
    missing = []
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source")
            if source and source.startswith(".") and not (COMPOSE_FILE.parent / source).exists():
                missing.append(f"{name}: {source}")
    assert missing == []


def test_third_party_images_are_official_by_default_and_replaceable(
        services: dict[str, dict[str, Any]]) -> None:
    """`${NAME_IMAGE:-official/image:tag}`: the official image unless a variable names another."""
    pattern = re.compile(r"\$\{[A-Z_]+_IMAGE:-[a-z0-9./-]+:[\w.-]+\}")
    wrong = {name: service["image"] for name, service in services.items()
             if "image" in service and "build" not in service
             and not pattern.fullmatch(service["image"])}
    assert wrong == {}


def test_each_service_knows_only_its_own_database_password(
        services: dict[str, dict[str, Any]]) -> None:
    """migrate (as the owner) makes every login; any other service is given one password, its
    own, in its DATABASE_URL: no service can connect as another."""
    password_vars = re.compile(r"\$\{(NYC311_[A-Z_]+_DB_PASSWORD)")
    made = set(password_vars.findall(json.dumps(services["migrate"])))
    assert len(made) >= 7, made
    for name, spec in services.items():
        if name == "migrate" or not spec.get("build"):
            continue
        env = spec.get("environment") or {}
        url = str(env.get("DATABASE_URL", ""))
        login = url.removeprefix("postgresql://").partition(":")[0]
        known = set(password_vars.findall(json.dumps(env)))
        if login == "nyc311":  # the owner's URL, with no service password in it
            assert not known, name
            continue
        assert known == {f"NYC311_{login.upper()}_DB_PASSWORD"}, (name, known)
        assert known <= made, f"{name}'s login is not made by migrate"
