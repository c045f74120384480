"""Grafana's provisioned files (deploy/grafana/) load where docker-compose.yml mounts them (no
Docker needed: the local check never starts Grafana, so these are what checks it).

The data sources point at the compose file's Prometheus, the dashboard provider reads the folder
compose mounts, every dashboard parses and refers only to provisioned data sources. The queries
of every dashboard are checked against the metrics the code defines, and each target's data
source uid, in tests/nyc311/test_metrics.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
GRAFANA = REPO / "deploy" / "grafana"
PROVISIONING = GRAFANA / "provisioning"
DASHBOARDS = GRAFANA / "dashboards"
PROVISIONING_PATH = "/etc/grafana/provisioning"  # where Grafana reads it (GF_PATHS_PROVISIONING)
# Grafana's own data source (the built-in annotations and "-- Grafana --" queries).
BUILT_IN = {"grafana", "-- Grafana --"}


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]


@pytest.fixture(scope="module")
def grafana(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    assert "grafana" in services, "docker-compose.yml has no grafana service"
    return services["grafana"]


def bind_mounts(service: dict[str, Any]) -> dict[str, tuple[Path, bool]]:
    """Container path -> (the repository path mounted there, read-only), for ./ mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *options = volume.split(":")
        if source.startswith("."):
            mounts[target] = ((COMPOSE_FILE.parent / source).resolve(), "ro" in options)
    return mounts


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def container_ports(service: dict[str, Any]) -> set[int]:
    """The ports a service listens on in its container, from its `ports:`."""
    ports = set()
    for entry in service.get("ports", []):
        text = str(entry["target"] if isinstance(entry, dict) else entry)
        ports.add(int(text.split("/")[0].rsplit(":", 1)[-1]))
    return ports


def provisioning_files(kind: str) -> list[tuple[Path, dict[str, Any]]]:
    """Every provisioning file of a kind (datasources, dashboards), parsed."""
    paths = sorted((PROVISIONING / kind).glob("*.y*ml"))
    assert paths, f"no provisioning file in {PROVISIONING / kind}"
    parsed = []
    for path in paths:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert isinstance(document, dict), f"{path.name}: not a YAML mapping"
        assert document.get("apiVersion") == 1, f"{path.name}: apiVersion must be 1"
        parsed.append((path, document))
    return parsed


def provisioned_datasources() -> list[dict[str, Any]]:
    sources = []
    for path, document in provisioning_files("datasources"):
        entries = document.get("datasources")
        assert isinstance(entries, list) and entries, f"{path.name}: no `datasources:` list"
        for source in entries:
            assert source.get("name") and source.get("type"), f"{path.name}: {source}"
            sources.append(source)
    return sources


def dashboards() -> list[tuple[Path, dict[str, Any]]]:
    paths = sorted(DASHBOARDS.glob("*.json"))
    assert paths, f"no dashboard in {DASHBOARDS}"
    parsed = []
    for path in paths:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise AssertionError(f"{path.name} is not JSON: {exc}") from None
        assert isinstance(document, dict), f"{path.name}: not a JSON object"
        parsed.append((path, document))
    return parsed


def datasource_refs(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every `datasource` of a dashboard, with where it is, but those of query targets."""
    if isinstance(node, dict):
        where = str(node.get("title") or node.get("name") or where)
        for key, value in node.items():
            if key == "datasource":
                yield where or "the dashboard", value
            elif key != "targets":
                yield from datasource_refs(value, where)
    elif isinstance(node, list):
        for item in node:
            yield from datasource_refs(item, where)


def test_the_provisioning_folder_is_mounted_where_grafana_reads_it(grafana):
    mounts = bind_mounts(grafana)
    path = environment(grafana).get("GF_PATHS_PROVISIONING", PROVISIONING_PATH)
    assert mounts.get(path) == (PROVISIONING, True), (
        f"grafana must mount deploy/grafana/provisioning read-only at {path}: {mounts}")


def test_datasources_parse_and_point_at_the_compose_prometheus(services, grafana):
    sources = provisioned_datasources()
    names = [source["name"] for source in sources]
    uids = [source["uid"] for source in sources if source.get("uid")]
    assert len(names) == len(set(names)) and len(uids) == len(set(uids)), (names, uids)
    assert sum(bool(source.get("isDefault")) for source in sources) <= 1, "several defaults"
    prometheus = [source for source in sources if source["type"] == "prometheus"]
    assert prometheus, "no Prometheus data source is provisioned"
    for source in prometheus:
        url = urlsplit(str(source.get("url", "")))
        host = url.hostname or ""
        assert url.scheme == "http" and host in services, (
            f"{source['name']}: {source.get('url')!r} is not a compose service")
        assert re.fullmatch(r"\$\{PROMETHEUS_IMAGE:-[^}]+\}", services[host].get("image", "")), (
            f"{source['name']}: {host} is not the Prometheus of docker-compose.yml")
        assert url.port in container_ports(services[host]), (
            f"{source['name']}: {host} listens on {sorted(container_ports(services[host]))}, "
            f"not {url.port}")
        assert host in (grafana.get("depends_on") or {}), f"grafana does not wait for {host}"


def test_dashboard_providers_read_the_folder_compose_mounts(grafana):
    mounts = bind_mounts(grafana)
    dashboard_paths = set()
    for path, document in provisioning_files("dashboards"):
        providers = document.get("providers")
        assert isinstance(providers, list) and providers, f"{path.name}: no `providers:` list"
        for provider in providers:
            assert provider.get("type", "file") == "file", f"{path.name}: {provider}"
            folder = (provider.get("options") or {}).get("path")
            assert mounts.get(folder, (None,))[0] == DASHBOARDS, (
                f"{path.name}: provider {provider.get('name')!r} reads {folder!r}, where "
                f"docker-compose.yml mounts no deploy/grafana/dashboards: {mounts}")
            dashboard_paths.add(folder)
    home = environment(grafana).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        folder, _, name = home.rpartition("/")
        assert folder in dashboard_paths and (DASHBOARDS / name).is_file(), (
            f"the home dashboard {home} is not one of deploy/grafana/dashboards")


def test_every_dashboard_parses_and_refers_to_provisioned_datasources():
    sources = provisioned_datasources()
    known = ({source["name"] for source in sources}
             | {source["uid"] for source in sources if source.get("uid")})
    uids = []
    for path, dashboard in dashboards():
        assert dashboard.get("uid") and dashboard.get("title"), f"{path.name}: no uid or title"
        uids.append(dashboard["uid"])
        refs = list(datasource_refs(dashboard))
        assert refs, f"{path.name} names no data source"
        for where, ref in refs:
            if ref is None:
                continue  # the default data source, provisioned with isDefault
            value = (ref.get("uid") or ref.get("name")) if isinstance(ref, dict) else ref
            assert value in known | BUILT_IN, (
                f"{path.name}, {where}: data source {ref!r} is not provisioned "
                f"(deploy/grafana/provisioning/datasources has {sorted(known)})")
    assert len(uids) == len(set(uids)), f"dashboard uids repeat: {uids}"


def test_grafana_runs_only_with_its_profile(services, grafana):
    assert grafana.get("profiles") == ["grafana"], "grafana needs `profiles: [\"grafana\"]`"
    others = {name: spec["profiles"] for name, spec in services.items()
              if spec.get("profiles") and name != "grafana"}
    assert others == {}, "only grafana is left out of a plain `docker compose up`"
    dependants = [name for name, spec in services.items() if "grafana" in (spec.get("depends_on")
                                                                           or {})]
    assert dependants == [], "a service started without the profile cannot wait for grafana"
