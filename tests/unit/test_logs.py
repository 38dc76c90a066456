from core.logs import REDACTED, redact


def test_redacts_secrets_at_any_depth() -> None:
    event = {
        "event": "x",
        "password": "hunter2hunter2",
        "body": {"pin": "1234", "nested": [{"Authorization": "Bearer abc"}, {"refresh_token": "t"}]},
        "webhook_secret": "whsec_x",
        "code": "123456",
        "failure_code": "INSUFFICIENT_FUNDS",
        "pin_set": True,
    }
    out = redact(event)
    text = repr(out)
    for secret in ("hunter2hunter2", "1234", "Bearer abc", "whsec_x", "123456", "'t'"):
        assert secret not in text
    assert out["body"]["pin"] == REDACTED
    assert out["failure_code"] == "INSUFFICIENT_FUNDS"
    assert out["pin_set"] is True


def test_a_line_below_the_level_runs_no_processor(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import logging

    import structlog

    from core import logs

    calls: list[int] = []
    monkeypatch.setattr(logs, "current_ids", lambda: calls.append(1) or (None, None))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure("WARNING")
    try:
        log = structlog.get_logger("test.levels")
        log.info("dropped", detail="x")
        assert calls == []  # filtered before add_trace_ids (and the redactor, the timestamp...)
        log.warning("kept", detail="y")
        assert calls == [1]
        assert '"event": "kept"' in capsys.readouterr().out
    finally:
        logs.configure("INFO")
        root.handlers[:] = handlers  # not a handler on this test's captured stdout
        root.setLevel(level)
