"""Prometheus metrics of the bank. Labels are bounded sets (no ids, no users).

Under gunicorn and Celery prefork, prometheus_client's multiprocess mode is used when
PROMETHEUS_MULTIPROC_DIR is set; gauges declare how their per-process values combine.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)

TRANSFERS_ACCEPTED = Counter(
    "bank_transfers_accepted_total", "Transfers accepted by the API (first acceptance, not replays)", ["kind"]
)
TRANSFERS_SETTLED = Counter(
    "bank_transfers_settled_total",
    "Transfers that reached a final state in a worker",
    ["outcome", "failure_code"],
)
ACCEPT_TO_FINAL = Histogram(
    "bank_transfer_accept_to_final_seconds", "From acceptance (202) to COMPLETED/FAILED", buckets=LATENCY_BUCKETS
)
SETTLE_TRANSACTION = Histogram(
    "bank_settle_transaction_seconds", "Duration of the settlement database transaction", buckets=LATENCY_BUCKETS
)
SETTLE_BATCH_SIZE = Histogram(
    "bank_settle_batch_size",
    "Transfers settled per settlement transaction",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000),
)
SETTLE_POISONED = Counter(
    "bank_settle_poisoned_total",
    "Transfers settlement could not apply (a non-transient error): ended FAILED with INTERNAL_ERROR",
)
LOCK_WAIT = Histogram("bank_lock_wait_seconds", "Time a worker waited for its account locks", buckets=LATENCY_BUCKETS)
LOCK_FAILURES = Counter(
    "bank_lock_failures_total",
    "Account lock acquisitions that failed",
    ["reason"],  # timeout | redis_unavailable
)
TASK_RETRIES = Counter("bank_task_retries_total", "Celery task retries", ["task"])
PASSWORD_HASH_UNREADABLE = Counter(
    "bank_password_hash_unreadable_total",
    "Logins refused because the stored password hash could not be read (corrupt or unknown format)",
)
MONEY_MOVED = Counter(
    "bank_money_moved_minor_units_total", "Amount moved by completed transfers, in minor units", ["currency", "kind"]
)
WEBHOOK_DELIVERIES = Counter(
    "bank_webhook_deliveries_total",
    "Webhook delivery attempts by outcome",
    ["outcome"],  # succeeded|retry|failed
)
WEBHOOK_ATTEMPT_SECONDS = Histogram(
    "bank_webhook_attempt_seconds", "Duration of one webhook HTTP attempt", buckets=LATENCY_BUCKETS
)

# Per-endpoint attempts, so one dead receiver shows (and alerts) long before its deliveries
# are given up (~27 h of retries). Bounded by the endpoints registered (capped per user).
WEBHOOK_ATTEMPTS = Counter(
    "bank_webhook_attempts_total",
    "Webhook HTTP attempts by endpoint and result",
    ["endpoint_id", "result"],  # ok | error (any non-2xx answer, timeout or connection failure)
)


def count_webhook_attempt(endpoint_id: str, ok: bool) -> None:
    """Both results exist from an endpoint's first attempt: the first failure of a healthy endpoint
    is then an increase of a known series (increase() does not count a new series' first value,
    which hid the first failures from WebhookEndpointDown)."""
    for result in ("ok", "error"):
        WEBHOOK_ATTEMPTS.labels(endpoint_id=endpoint_id, result=result)
    WEBHOOK_ATTEMPTS.labels(endpoint_id=endpoint_id, result="ok" if ok else "error").inc()


# Set by a heartbeat task that beat sends to every queue: a pool that stops taking work from a
# queue (stopped, hung, or not consuming it) stops advancing that queue's series. Labelled, so
# a process that never ran a heartbeat (the API) exports no sample rather than a false 0.
# The backlog gauges (pending transfers, queue depth...) are not here: the backlog exporter
# (worker/backlog_exporter.py) measures them in a process of its own.
WORKER_HEARTBEAT = Gauge(
    "bank_worker_heartbeat_timestamp_seconds",
    "Last time a worker pool ran a heartbeat task taken from this queue",
    ["queue"],
    multiprocess_mode="max",
)


# failure_code values. A decline is the customer's business (charted); a system failure is
# ours (paged by SettleErrorRateHigh, which counts every code that is not a decline). The
# system codes are created at zero so the first one is a visible increase, not a new series.
BUSINESS_DECLINES = ("INSUFFICIENT_FUNDS", "ACCOUNT_INACTIVE", "LINKED_FAILED")
SYSTEM_FAILURES = ("INTERNAL_ERROR",)


def touch_known_labels() -> None:
    """Create the bounded label sets at zero so dashboards and alerts see series from the start."""
    for kind in ("TRANSFER", "DEPOSIT", "REFUND"):
        TRANSFERS_ACCEPTED.labels(kind=kind)
    TRANSFERS_SETTLED.labels(outcome="COMPLETED", failure_code="")
    for code in (*BUSINESS_DECLINES, *SYSTEM_FAILURES):
        TRANSFERS_SETTLED.labels(outcome="FAILED", failure_code=code)
    for reason in ("timeout", "redis_unavailable"):
        LOCK_FAILURES.labels(reason=reason)
    for outcome in ("succeeded", "retry", "failed"):
        WEBHOOK_DELIVERIES.labels(outcome=outcome)
    TASK_RETRIES.labels(task="worker.tasks.settle_partition")
