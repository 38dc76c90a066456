"""Admin commands: ``flask --app web <command>``."""

from __future__ import annotations

import click
from flask import Flask

from core.identity import service as identity
from web.context import transaction


def init_app(app: Flask) -> None:
    @app.cli.command("create-admin")
    @click.option("--email", envvar="ADMIN_EMAIL", required=True)
    @click.option("--password", envvar="ADMIN_PASSWORD", required=True, prompt=True, hide_input=True)
    @click.option("--full-name", default="Administrator")
    def create_admin(email: str, password: str, full_name: str) -> None:
        """Create the first admin (or reset an existing admin's password)."""
        if len(password) < 12:
            raise click.BadParameter("must be at least 12 characters", param_hint="--password")
        with transaction() as session:
            user = identity.create_admin(session, email=email, password=password, full_name=full_name)
        click.echo(f"admin {user.email} ready (id {user.id})")
