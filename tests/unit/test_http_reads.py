"""HTTP checks against a real server on loopback (pytest-httpserver): the value a
check reads (json:, regex:, status, latency), and every failure as a disconnected
sample whose text says what went wrong, without secrets."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading

import pytest
from pydantic import ValidationError
from werkzeug import Response

from beamwatch.config.schema import CheckConfig, Config
from beamwatch.sim.status_http import StatusService
from beamwatch.sources.http import HttpSource

TOKEN = "tok-Zq81-very-secret"
PASSWORD = "pw-Hh27-very-secret"


def make_source(base_url: str, checks: list[dict], **settings) -> HttpSource:
    config = Config.model_validate({
        "beamline": "T",
        "sources": {"gda": {"kind": "http", "base_url": base_url, **settings}},
        "checks": [{"source": "gda", **c} for c in checks],
    })
    return HttpSource.from_config("gda", config)


async def poll_one(base_url: str, check: dict, **settings):
    source = make_source(base_url, [{"id": "c", **check}], **settings)
    await source.open()
    try:
        return await source.poll(source.checks["c"])
    finally:
        await source.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- values ---------------------------------------------------------------------------------


async def test_json_gives_the_jmespath_result(httpserver):
    httpserver.expect_request("/api/status").respond_with_json(
        {"state": "RUNNING", "detectors": [{"name": "eiger", "temp": 21.5}]})
    sample = await poll_one(httpserver.url_for(""), {"get": "/api/status", "json": "state"})
    assert (sample.connected, sample.value) == (True, "RUNNING")
    sample = await poll_one(httpserver.url_for(""),
                            {"get": "/api/status", "json": "detectors[0].temp"})
    assert sample.value == 21.5


async def test_regex_gives_group_one_as_a_number_or_the_whole_match(httpserver):
    httpserver.expect_request("/metrics").respond_with_data(
        "queue_length 17\nstate=idle\n", content_type="text/plain")
    sample = await poll_one(httpserver.url_for(""),
                            {"get": "/metrics", "regex": r"queue_length (\d+)"})
    assert sample.value == 17.0
    sample = await poll_one(httpserver.url_for(""), {"get": "/metrics", "regex": "state=\\w+"})
    assert sample.value == "state=idle"


async def test_without_json_or_regex_the_value_is_the_status_code(httpserver):
    httpserver.expect_request("/health").respond_with_data("down", status=503)
    sample = await poll_one(httpserver.url_for(""), {"get": "/health"})
    assert (sample.connected, sample.value) == (True, 503)
    sample = await poll_one(httpserver.url_for(""), {"get": "/health", "measure": "status"})
    assert sample.value == 503


async def test_latency_is_the_response_time_in_seconds(httpserver):
    httpserver.expect_request("/ping").respond_with_data("pong")
    sample = await poll_one(httpserver.url_for(""), {"get": "/ping", "measure": "latency"})
    assert sample.connected and isinstance(sample.value, float)
    assert 0 < sample.value < 10


async def test_post_sends_the_json_body_and_headers_and_basic_auth(httpserver):
    seen = {}

    def handler(request):
        seen.update(body=request.get_json(), auth=request.authorization,
                    token=request.headers.get("X-Token"))
        return Response(json.dumps({"ok": True}), content_type="application/json")

    httpserver.expect_request("/api/query", method="POST").respond_with_handler(handler)
    sample = await poll_one(httpserver.url_for(""),
                            {"post": "/api/query", "body": {"beamline": "i04"}, "json": "ok"},
                            headers={"X-Token": TOKEN}, username="reader", password=PASSWORD)
    assert sample.value is True
    assert seen["body"] == {"beamline": "i04"}
    assert seen["token"] == TOKEN
    assert (seen["auth"].username, seen["auth"].password) == ("reader", PASSWORD)


async def test_one_client_reuses_its_connection_between_polls():
    """Against a keep-alive server (the sim's status service) three polls are one
    connection."""
    connections = []

    class Counting(StatusService):
        async def _serve(self, reader, writer):
            connections.append(writer)
            await super()._serve(reader, writer)

    server = Counting(free_port())
    await server.start()
    source = make_source(server.url, [{"id": "c", "get": "/api/status", "json": "state"}])
    await source.open()
    try:
        for _ in range(3):
            assert (await source.poll(source.checks["c"])).value == "RUNNING"
    finally:
        await source.close()
        server.close()
    assert len(connections) == 1


# -- failures: a disconnected sample that says why ---------------------------------------------


async def test_http_error_when_a_value_is_wanted(httpserver):
    httpserver.expect_request("/api/status").respond_with_data("oops", status=500)
    sample = await poll_one(httpserver.url_for(""), {"get": "/api/status", "json": "state"})
    assert not sample.connected
    assert sample.error == "HTTP 500 from /api/status"


async def test_invalid_json(httpserver):
    httpserver.expect_request("/api/status").respond_with_data("<html>maintenance</html>")
    sample = await poll_one(httpserver.url_for(""), {"get": "/api/status", "json": "state"})
    assert not sample.connected
    assert sample.error.startswith("invalid JSON from /api/status")
    assert "<html>maintenance" in sample.error


async def test_jmespath_matching_nothing(httpserver):
    httpserver.expect_request("/api/status").respond_with_json({"status": "RUNNING"})
    sample = await poll_one(httpserver.url_for(""), {"get": "/api/status", "json": "state"})
    assert sample.error == "json: 'state' matched nothing in the response"


async def test_jmespath_giving_an_object_is_not_a_value(httpserver):
    httpserver.expect_request("/api/status").respond_with_json({"state": {"a": 1}})
    sample = await poll_one(httpserver.url_for(""), {"get": "/api/status", "json": "state"})
    assert sample.error == "json: 'state' gave an object, not a single value"


async def test_no_regex_match(httpserver):
    httpserver.expect_request("/metrics").respond_with_data("nothing here")
    sample = await poll_one(httpserver.url_for(""), {"get": "/metrics", "regex": r"queue (\d+)"})
    assert sample.error == r"regex: 'queue (\d+)' matched nothing in the response from /metrics"


async def test_connection_refused():
    port = free_port()
    sample = await poll_one(f"http://127.0.0.1:{port}", {"get": "/api/status"})
    assert not sample.connected
    assert sample.error == f"connection refused by 127.0.0.1:{port} (nothing listening?)"


async def test_dns_failure():
    sample = await poll_one("http://no-such-host.invalid", {"get": "/api/status"})
    assert sample.error == "DNS: cannot resolve host 'no-such-host.invalid'"


async def test_timeout_says_how_long_it_waited(httpserver):
    release = threading.Event()
    httpserver.expect_request("/slow").respond_with_handler(
        lambda request: release.wait(10) and Response("late") or Response("late"))
    try:
        sample = await poll_one(httpserver.url_for(""), {"get": "/slow", "timeout": "300ms"})
    finally:
        release.set()
    assert not sample.connected
    assert "0.3 s" in sample.error and "no answer" in sample.error


async def test_cert_days_of_a_plain_http_url_is_a_clear_error(httpserver):
    sample = await poll_one(httpserver.url_for(""), {"get": "/x", "measure": "cert_days"})
    assert not sample.connected
    assert sample.error.startswith("measure: cert_days needs an https:// URL, not http://")


def test_a_bad_jmespath_expression_is_refused_at_load():
    with pytest.raises(ValidationError) as e:
        CheckConfig.model_validate({"id": "c", "source": "gda", "get": "/x", "json": "state["})
    assert "json: 'state[' is not a JMESPath expression" in str(e.value)


# -- isolation and secrets ------------------------------------------------------------------


async def test_a_hung_server_does_not_hold_up_checks_of_another_server(httpserver):
    """Even with max_connections: 1, the slot is per server: the fast check answers
    while the hung one still waits."""
    release = threading.Event()
    port = free_port()
    hung = socket.socket()
    hung.bind(("127.0.0.1", port))
    hung.listen(8)  # accepts connections, never answers
    httpserver.expect_request("/fast").respond_with_data("ok")
    source = make_source(f"http://127.0.0.1:{port}", [
        {"id": "hung-1", "get": "/status", "timeout": "30s"},
        {"id": "hung-2", "get": "/status", "timeout": "30s"},
        {"id": "fast", "get": httpserver.url_for("/fast")},
    ], max_connections=1)
    await source.open()
    try:
        stuck = [asyncio.ensure_future(source.poll(source.checks[i])) for i in ("hung-1",
                                                                                "hung-2")]
        await asyncio.sleep(0)
        sample = await asyncio.wait_for(source.poll(source.checks["fast"]), 10)
        assert (sample.connected, sample.value) == (True, 200)
        assert not any(t.done() for t in stuck)
    finally:
        release.set()
        for t in stuck:
            t.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)
        await source.close()
        hung.close()


async def test_secrets_are_never_logged_or_shown(httpserver, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    httpserver.expect_request("/api/status").respond_with_data("oops", status=500)
    settings = {"headers": {"Authorization": f"Bearer {TOKEN}"}, "username": "reader",
                "password": PASSWORD}
    failed = await poll_one(httpserver.url_for(""), {"get": "/api/status", "json": "state"},
                            **settings)
    refused = await poll_one(f"http://127.0.0.1:{free_port()}", {"get": "/x"}, **settings)
    shown = " ".join([caplog.text, failed.error or "", refused.error or "",
                      repr(make_source(httpserver.url_for(""), [], **settings).settings)])
    assert "HTTP Request" in caplog.text or "send_request" in caplog.text  # logging was on
    assert TOKEN not in shown and PASSWORD not in shown
