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
