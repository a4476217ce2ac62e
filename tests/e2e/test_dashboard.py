"""The Grafana dashboard (docs/grafana-dashboard.json) against the gateway's /metrics.

A dashboard whose query names a metric the gateway does not export shows an empty
panel, not an error, so nobody notices until the panel is needed. This file checks
the dashboard's shape (it parses, has a uid and a title, unique panel ids, a title,
a description and a query on every panel), extracts the metric names from every
PromQL expression it holds (panel targets, annotations, template variables), then
runs a gateway of its own with traffic that makes every metric family of DESIGN.md
§2 "Metrics" appear and checks that each name the dashboard uses is in its /metrics.

The traffic, on one model whose first target is a port that refuses connections and
whose second is the priced built-in mock: a whole answer and a stream (each a
failover; the stream gives time to first token), then two requests on a key limited
to one request per minute (the second is refused with 429).
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any, Iterator

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import (
    PROVIDER_KEY,
    REPO_ROOT,
    ROUTING,
    collect,
    free_port,
    make_client,
    new_request_id,
    pingora_settings,
    start_on_free_ports,
)

DASHBOARD_PATH = REPO_ROOT / "docs" / "grafana-dashboard.json"
METRIC_NAME = re.compile(r"switchyard_[a-z_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

APP_KEY = "sk-sy-e2e-dash-app-" + secrets.token_hex(12)
LIMITED_KEY = "sk-sy-e2e-dash-limited-" + secrets.token_hex(12)
MODEL = "dash-chat"
REFUSED = "dash-refused"  # an OpenAI provider on a 127.0.0.1 port nobody listens on
CHAT = [{"role": "user", "content": "Which city is the capital of Denmark?"}]


# --------------------------------------------------------------------------------------
# The dashboard
# --------------------------------------------------------------------------------------

def load_dashboard() -> dict:
    """The dashboard file, parsed."""
    return json.loads(DASHBOARD_PATH.read_text(encoding="utf-8"))


def all_panels(panels: list[dict]) -> Iterator[dict]:
    """Every panel, rows and the panels nested in collapsed rows included."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def strings_under(node: Any, key: str) -> Iterator[str]:
    """Every string value of a `key` member anywhere in a JSON tree."""
    if isinstance(node, dict):
        for name, value in node.items():
            if name == key and isinstance(value, str):
                yield value
            else:
                yield from strings_under(value, key)
    elif isinstance(node, list):
        for item in node:
            yield from strings_under(item, key)


def panel_expressions(panel: dict) -> list[str]:
    """The PromQL of a panel's targets."""
    return list(strings_under(panel.get("targets", []), "expr"))


def template_queries(dashboard: dict) -> list[str]:
    """The PromQL of the query variables: each one's `query` (a string, or an object
    holding one) and its `definition`."""
    queries = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        queries.append(query["query"] if isinstance(query, dict) else query)
        if variable.get("definition"):
            queries.append(variable["definition"])
    return queries


def dashboard_expressions(dashboard: dict) -> list[str]:
    """Every PromQL expression of the dashboard: each `expr` anywhere in it (panel
    targets, annotations) and the template variables' queries."""
    return list(strings_under(dashboard, "expr")) + template_queries(dashboard)


def base_name(name: str) -> str:
    """The metric a series name belongs to: a histogram's `_bucket`, `_sum` and
    `_count` series belong to its base name."""
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def metric_names(expr: str) -> set[str]:
    """The Switchyard metrics a PromQL expression reads."""
    return {base_name(name) for name in METRIC_NAME.findall(expr)}


def test_dashboard_is_an_importable_dashboard():
    dashboard = load_dashboard()
    assert isinstance(dashboard.get("uid"), str) and dashboard["uid"]
    assert isinstance(dashboard.get("title"), str) and dashboard["title"]
    assert isinstance(dashboard.get("schemaVersion"), int)
    panels = list(all_panels(dashboard["panels"]))
    assert panels, "the dashboard has no panels"
    ids = [panel.get("id") for panel in panels]
    assert all(isinstance(i, int) for i in ids), f"a panel without an id: {ids}"
    assert len(ids) == len(set(ids)), f"panel ids are not unique: {sorted(ids)}"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"model", "provider"} <= variables


def test_every_panel_has_a_title_a_description_and_a_query():
    for panel in all_panels(load_dashboard()["panels"]):
        assert panel.get("title"), f"panel {panel['id']} has no title"
        if panel["type"] == "row":  # a section header: no query of its own
            continue
        assert panel.get("description"), f"panel {panel['title']!r} has no description"
        assert panel_expressions(panel), f"panel {panel['title']!r} has no query"


def test_every_expression_names_a_switchyard_metric():
    expressions = dashboard_expressions(load_dashboard())
    assert expressions
    for expr in expressions:
        assert metric_names(expr), f"no switchyard_* metric in {expr!r}"


# --------------------------------------------------------------------------------------
# The gateway's /metrics
# --------------------------------------------------------------------------------------

def dashboard_gateway_config(workdir: Path) -> dict:
    """Two keys, one limited to a request per minute, and one model that fails over
    from a refused OpenAI provider (priority 1) to the priced mock (priority 2)."""
    return {
        "listen": f"127.0.0.1:{free_port()}",
        "admin_listen": f"127.0.0.1:{free_port()}",
        "keys": [
            {"name": "dash-app", "key": APP_KEY},
            {"name": "dash-limited", "key": LIMITED_KEY,
             "rate_limit": {"requests_per_minute": 1}},
        ],
        "providers": {
            "demo": {"type": "mock"},
            REFUSED: {"type": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1",
                      "api_key": PROVIDER_KEY},
        },
        "models": {
            MODEL: {"targets": [
                {"provider": REFUSED, "model": "gpt-4o", "priority": 1},
                {"provider": "demo", "model": "mock-chat-1", "priority": 2,
                 "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
            ]},
        },
        "routing": ROUTING,
        "pingora": pingora_settings(workdir),
    }


def send_traffic(gateway) -> None:
    """A whole answer and a stream, each failing over to the mock, then two requests on
    the limited key, the second refused. Returns once every request's access-log line
    is out: the gateway counts a request's metrics before it writes that line."""
    whole, stream, admitted, refused = (new_request_id(f"dash-{name}") for name in
                                        ("whole", "stream", "admitted", "refused"))
    app = make_client(gateway, APP_KEY)
    limited = make_client(gateway, LIMITED_KEY)
    try:
        app.chat.completions.create(model=MODEL, messages=CHAT,
                                    extra_headers={"x-request-id": whole})
        pieces, _ = collect(app.chat.completions.create(
            model=MODEL, messages=CHAT, stream=True, extra_headers={"x-request-id": stream}))
        assert pieces, "the stream carried no content"
        limited.chat.completions.create(model=MODEL, messages=CHAT,
                                        extra_headers={"x-request-id": admitted})
        with pytest.raises(openai.RateLimitError):
            limited.chat.completions.create(model=MODEL, messages=CHAT,
                                            extra_headers={"x-request-id": refused})
    finally:
        app.close()
        limited.close()
    for rid in (whole, stream, admitted):
        line = gateway.log_for(rid)
        assert (line["status"], line["attempts"]) == (200, 2), f"no failover: {line}"
    assert gateway.log_for(refused)["status"] == 429


def exported_metrics(exposition: str) -> dict[str, str]:
    """Metric name -> family type ("counter", "gauge", "histogram") of every series in
    a Prometheus text exposition. prometheus_client strips `_total` from a counter's
    family name but not from its samples, so names are taken from the samples and
    normalised like the dashboard's (`base_name`)."""
    return {base_name(sample.name): family.type
            for family in text_string_to_metric_families(exposition)
            for sample in family.samples}


@pytest.fixture(scope="module")
def exported(start_gateway, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What a gateway that saw `send_traffic` exports, by `exported_metrics`."""
    gateway = start_on_free_ports(start_gateway, tmp_path_factory, dashboard_gateway_config)
    send_traffic(gateway)
    return exported_metrics(gateway.metrics_text())


def test_every_metric_the_dashboard_uses_is_exported(exported):
    used = set().union(*map(metric_names, dashboard_expressions(load_dashboard())))
    missing = sorted(used - exported.keys())
    assert not missing, (f"the dashboard queries metrics the gateway does not export: "
                         f"{missing}; exported: {sorted(exported)}")


def test_the_dashboard_takes_quantiles_of_histograms_only(exported):
    bucketed = {base_name(name) for expr in dashboard_expressions(load_dashboard())
                for name in METRIC_NAME.findall(expr) if name.endswith("_bucket")}
    assert bucketed, "the dashboard has no latency quantiles"
    for name in sorted(bucketed):
        assert exported.get(name) == "histogram", f"{name} is not a histogram"
