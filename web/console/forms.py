"""The console's forms. WTForms (Flask-WTF) renders them and checks the CSRF token; the values are
then checked with the API's own marshmallow schemas (web/schemas.py), so a rule has one home."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField, TextAreaField
from wtforms.validators import InputRequired, Length


class LoginForm(FlaskForm):  # type: ignore[misc]  # flask_wtf ships no type hints
    email = StringField("Email", validators=[InputRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[InputRequired(), Length(max=1024)])


class OtpForm(FlaskForm):  # type: ignore[misc]  # flask_wtf ships no type hints
    code = StringField("One-time code", validators=[InputRequired(), Length(max=6)])


class ActionForm(FlaskForm):  # type: ignore[misc]  # flask_wtf ships no type hints
    """A button with nothing to fill in (logout, retry): only the CSRF token."""


class ReasonForm(FlaskForm):  # type: ignore[misc]  # flask_wtf ships no type hints
    reason = TextAreaField("Reason")


class KycForm(FlaskForm):  # type: ignore[misc]  # flask_wtf ships no type hints
    decision = HiddenField()
    reason = StringField("Reason")


class LimitsForm(FlaskForm):  # type: ignore[misc]  # flask_wtf ships no type hints
    per_transfer = StringField("Per transfer (minor units; empty: no cap)")
    daily_outgoing = StringField("Daily outgoing (minor units; empty: no cap)")
    monthly_outgoing = StringField("Monthly outgoing (minor units; empty: no cap)")
    credit_limit = StringField("Credit line (minor units; empty or 0: none)")
    reason = StringField("Reason")
