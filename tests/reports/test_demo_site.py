"""The site as `make demo` publishes it: under the address demo/run.sh tells you to open, its
data.json a DCAT-US catalog that passes the schema's format checks; and a publication without
NYC311_SITE_URL, which keeps its relative links, says so in one warning line.

The address is read by bash from demo/run.sh's own lines, so the test follows the script; the
site is published by `nyc311 publish`, in a process of its own like the demo's, from a month of
requests, surveys and answers that went through Kafka and the projector.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from reports.catalog import CATALOG
from reports.output import RELATIVE_CATALOG
from tests.helpers import produce, project
from tests.reports.test_catalog import dcat_errors, messages
from tests.reports.test_survey_responses import MONTH, month_events, produce_v1

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo" / "run.sh"


def demo_address() -> tuple[str, str]:
    """(NYC311_SITE_URL as demo/run.sh exports it, the line the demo ends with telling where
    to open the site), from the script's own lines, run by bash with no DEMO_ setting."""
    lines = DEMO.read_text().splitlines()
    settings = [line for line in lines
                if line.startswith(("SITE_PORT=", "export NYC311_SITE_URL="))]
    told = [line for line in lines if line.startswith('echo "Open site/index.html')]
    assert len(settings) == 2 and len(told) == 1, (settings, told)
    script = "\n".join([*settings, 'printf "%s\\n" "$NYC311_SITE_URL"', *told])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEMO_", "NYC311_"))}
    done = subprocess.run(["bash", "-euc", script], env=env, capture_output=True, text=True,
                          check=True, timeout=30)
    url, line = done.stdout.splitlines()
    return url, line


def test_the_demo_publishes_under_the_address_it_tells_you_to_open():
    url, told = demo_address()
    assert url == "http://127.0.0.1:8000/"
    assert told == ("Open site/index.html (or: python3 -m http.server -d site 8000, then "
                    "http://127.0.0.1:8000/)")
    lines = DEMO.read_text().splitlines()
    exported = next(i for i, line in enumerate(lines)
                    if line.startswith("export NYC311_SITE_URL="))
    published = next(i for i, line in enumerate(lines) if "/nyc311 publish --month" in line)
    assert exported < published
    assert not [line for line in lines[exported + 1:] if "NYC311_SITE_URL=" in line
                or "unset NYC311_SITE_URL" in line]


def publish(settings, out: Path, site_url: str | None) -> subprocess.CompletedProcess[str]:
    """`nyc311 publish --month MONTH --out out` with the test's database, as the demo runs it
    (text logs), NYC311_SITE_URL set to ``site_url`` or unset."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KAFKA_", "NYC311_", "DATABASE_URL"))}
    env.update(DATABASE_URL=settings.database_url,
               KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
               NYC311_ENV_FILE=os.devnull, NYC311_LOG_FORMAT="text")
    if site_url is not None:
        env["NYC311_SITE_URL"] = site_url
    return subprocess.run([sys.executable, "-m", "cli", "publish", "--month", MONTH,
                           "--out", str(out)], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)


def urls(document: dict[str, Any]) -> list[str]:
    found = []
    for dataset in document["dataset"]:
        found += [dataset["landingPage"], dataset["describedBy"]]
        for distribution in dataset["distribution"]:
            found += [distribution[k] for k in ("downloadURL", "describedBy") if k in distribution]
    return found


def test_the_demo_sites_catalog_validates_with_format_checks(settings, topics, db, tmp_path):
    events, old_answers = month_events()
    produce(settings, events)
    produce_v1(settings, old_answers)
    assert project(settings).dead_lettered == 0
    url, _ = demo_address()

    done = publish(settings, tmp_path / "site", url)
    assert done.returncode == 0, done.stderr
    assert "NYC311_SITE_URL is not set" not in done.stderr
    site = tmp_path / "site"
    document = json.loads((site / CATALOG).read_bytes())
    assert len(document["dataset"]) == 7  # the six tables and the trends
    assert all(d["distribution"] for d in document["dataset"])
    assert messages(dcat_errors(document)) == []  # formats checked: every URL a uri
    assert document["@id"] == url + CATALOG
    for link in urls(document):
        assert link.startswith(url), link
        assert (site / link.removeprefix(url).split("#")[0]).is_file(), link

    # unset, as in a production that forgot it: the same site, relative links, one warning
    done = publish(settings, tmp_path / "unset", None)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "NYC311_SITE_URL" in line]
    assert len(warnings) == 1 and " WARNING " in warnings[0], done.stderr
    assert warnings[0].endswith(RELATIVE_CATALOG)
    relative = json.loads((tmp_path / "unset" / CATALOG).read_bytes())
    assert messages(dcat_errors(relative, formats=False)) == []
    assert dcat_errors(relative)  # what a harvester's validator rejects
    assert all(not link.startswith("http") for link in urls(relative))
    for path in ("trends.csv", f"data/{MONTH}/survey_response_rates.csv", "index.html"):
        assert (tmp_path / "unset" / path).read_bytes() == (site / path).read_bytes(), path
