"""Admin commands: ``flask --app web <command>``."""

from __future__ import annotations

import click
from flask import Flask
from sqlalchemy import make_url

from core.audit.verify import default_workers, record_checkpoint, verify_chain
from core.check_timeout import limit_statement_time
from core.create_database import create_database_if_missing
from core.identity import admin as admins
from core.reconcile import reconcile
from core.reconcile import record_checkpoint as record_reconcile_checkpoint
from core.webhooks import service as webhooks
from web.context import policies, settings, transaction
from web.progress import progress_bar


def init_app(app: Flask) -> None:
    @app.cli.command("create-db")
    def create_db() -> None:
        """Create the database DATABASE_URL names if it does not exist yet (idempotent); then run
        `alembic upgrade head`."""
        url = make_url(settings().sqlalchemy_url)
        created = create_database_if_missing(url.render_as_string(hide_password=False))
        click.echo(f"database {url.database} {'created' if created else 'already exists'}")

    @app.cli.command("create-admin")
    @click.option("--email", envvar="ADMIN_EMAIL", required=True)
    @click.option("--password", envvar="ADMIN_PASSWORD", required=True, prompt=True, hide_input=True)
    @click.option("--full-name", default="Administrator")
    def create_admin(email: str, password: str, full_name: str) -> None:
        """Create the first admin (or reset an existing admin's password)."""
        if len(password) < 12:
            raise click.BadParameter("must be at least 12 characters", param_hint="--password")
        with transaction() as session:
            user = admins.create_admin(session, email=email, password=password, full_name=full_name)
        click.echo(f"admin {user.email} ready (id {user.id})")

    @app.cli.command("unlock-user")
    @click.option("--email", required=True)
    def unlock_user(email: str) -> None:
        """Clear the login lockout of an email (every client address and the email-wide lock), audited."""
        with transaction() as session:
            cleared = admins.unlock_login(session, email=email)
        click.echo(f"login lock of {email.strip().lower()} cleared ({cleared} counter(s))")

    @app.cli.command("rotate-webhook-secrets-key")
    def rotate_webhook_secrets_key() -> None:
        """Re-encrypt every webhook endpoint secret under WEBHOOK_SECRETS_KEY, audited; afterwards
        WEBHOOK_SECRETS_PREVIOUS_KEYS can be emptied."""
        box = policies().webhooks.box
        with transaction() as session:
            count = webhooks.reencrypt_secrets(session, box)
        click.echo(f"webhook secrets re-encrypted under the current key: {count} endpoint(s)")

    init_checks(app)


def init_checks(app: Flask) -> None:
    @app.cli.command("reconcile")
    @click.option(
        "--statement-timeout",
        type=click.FloatRange(min=0),
        default=0,
        show_default=True,
        help="Seconds any one statement of the check may run; 0 = no limit (the app's limit is for the API).",
    )
    @click.option(
        "--incremental",
        is_flag=True,
        help="Check only the transfers and accounts changed since the last clean pass (what audit rows of "
        "later transactions name); without it, a full pass over the whole book.",
    )
    def reconcile_command(statement_timeout: float, incremental: bool) -> None:
        """Check balances against the ledger; exit 1 and list every difference if anything is off."""
        with transaction() as session, progress_bar("reconcile: invariants") as progress:
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            limit_statement_time(session, statement_timeout)
            report = reconcile(session, progress, incremental=incremental)
            record_reconcile_checkpoint(session, report)
        for problem in report.problems:
            click.echo(f"MISMATCH {problem}", err=True)
        start = (
            "full pass"
            if report.started_after_horizon is None
            else f"changed since transaction {report.started_after_horizon}"
        )
        click.echo(
            f"reconcile ({start}): {report.accounts_checked} accounts, {report.transfers_checked} transfers, "
            f"{len(report.problems)} problem(s)"
        )
        if not report.ok:
            raise SystemExit(1)

    @app.cli.command("verify-audit")
    @click.option(
        "--statement-timeout",
        type=click.FloatRange(min=0),
        default=0,
        show_default=True,
        help="Seconds any one statement of the check may run; 0 = no limit (the app's limit is for the API).",
    )
    @click.option(
        "--incremental",
        is_flag=True,
        help="Prove only the batches after the last intact pass (its batch's root and link rechecked); "
        "without it, a full pass from seq 1.",
    )
    @click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=default_workers,
        show_default="one per core, at most 4",
        help="Processes proving the chain, each a share of the seqs, all in the command's snapshot.",
    )
    def verify_audit_command(statement_timeout: float, incremental: bool, workers: int) -> None:
        """Verify the sealed audit chain; exit 1 at the first broken link (unsealed rows are normal)."""
        with transaction() as session, progress_bar("verify-audit: seals") as progress:
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            limit_statement_time(session, statement_timeout)
            result = verify_chain(session, incremental=incremental, progress=progress, workers=workers)
            record_checkpoint(session, result, full_pass=not incremental)
        pending = f"{result.unsealed_rows} unsealed (oldest {result.oldest_unsealed_age_seconds:.1f} s)"
        start = "from seq 1" if result.started_after_batch is None else f"after batch {result.started_after_batch}"
        if not result.ok:
            where = f" at seq {result.broken_at_seq}" if result.broken_at_seq is not None else ""
            click.echo(f"audit chain BROKEN{where}: {result.reason}; {pending}", err=True)
            raise SystemExit(1)
        click.echo(
            f"audit chain intact: {result.rows_checked} rows in {result.batches_checked} batches {start}"
            f" ({result.processes} process{'es' if result.processes > 1 else ''}); {pending}"
        )
