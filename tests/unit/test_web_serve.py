"""web/serve.py's arguments and web/request_limits.py's limits (gunicorn's, under any server)."""

from __future__ import annotations

import pytest

from web import request_limits, serve


def test_bind_and_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9001")
    assert serve._bind(["--workers", "3"]) == ("0.0.0.0:9001", ["--workers", "3"])
    assert serve._bind(["--bind", "127.0.0.1:5", "--timeout", "60"]) == ("127.0.0.1:5", ["--timeout", "60"])
    assert serve._bind(["--bind=127.0.0.1:6"]) == ("127.0.0.1:6", [])
    assert serve._option(["--timeout", "60", "--workers", "3"], "--workers", "2") == "3"
    assert serve._option(["--workers=4"], "--workers", "2") == "4"
    assert serve._option([], "--workers", "2") == "2"


def test_server_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_SERVER", raising=False)
    assert serve.server_name() == "gunicorn"
    monkeypatch.setenv("WEB_SERVER", "Granian")
    assert serve.server_name() == "granian"
    monkeypatch.setenv("WEB_SERVER", "uwsgi")
    with pytest.raises(SystemExit):
        serve.server_name()


def _environ(**extra: str) -> dict[str, str]:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/v1/healthz", "SERVER_PROTOCOL": "HTTP/1.1", **extra}


@pytest.mark.parametrize(
    ("environ", "status"),
    [
        (_environ(), None),
        (_environ(QUERY_STRING="q=" + "a" * 4000), None),
        (_environ(QUERY_STRING="q=" + "a" * 5000), 414),
        (_environ(RAW_URI="/x?" + "a" * 5000), 414),
        (_environ(HTTP_X_BIG="b" * 8000), None),
        (_environ(HTTP_X_BIG="b" * 9000), 431),
        (_environ(**{f"HTTP_X_H{i}": "v" for i in range(100)}), None),
        (_environ(**{f"HTTP_X_H{i}": "v" for i in range(101)}), 431),
    ],
)
def test_refusal(environ: dict[str, str], status: int | None) -> None:
    assert request_limits.refusal(environ) == status


def test_a_refusal_is_problem_json_without_the_request() -> None:
    answered: list[tuple[str, list[tuple[str, str]]]] = []
    app = request_limits.RequestLimits(lambda environ, start: [b"app"])
    body = b"".join(app(_environ(QUERY_STRING="token=" + "s" * 5000), lambda s, h: answered.append((s, h))))
    assert answered[0][0] == "414 Request-URI Too Long"
    assert ("Content-Type", "application/problem+json") in answered[0][1]
    assert b'"code": "URI_TOO_LONG"' in body and b"sss" not in body
    assert b"".join(app(_environ(), lambda s, h: None)) == b"app"


def test_the_bench_runs_the_procfiles_web_entry_through_web_serve() -> None:
    from bench.run import web_entry_under
    from bench.system import parse_procfile
    from tests.unit.test_architecture import ROOT

    web = parse_procfile((ROOT / "Procfile").read_text())["web"]
    under = web_entry_under(web, "granian")
    assert "python -m web.serve --bind" in under and "gunicorn" not in under
    assert under.split("exec ")[0] == web.split("exec ")[0]  # the entry's environment kept
    with pytest.raises(SystemExit):
        web_entry_under("uwsgi app", "granian")
