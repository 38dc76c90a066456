"""Imports every model module so ``Base.metadata`` describes the whole schema (for Alembic)."""

from core import events, models
from core.identity import models as identity_models
from core.models import Base
from core.payouts import models as payout_models
from core.reconciliation import models as reconciliation_models
from core.schedules import models as schedule_models
from core.webhooks import models as webhook_models

__all__ = [
    "Base",
    "events",
    "identity_models",
    "models",
    "payout_models",
    "reconciliation_models",
    "schedule_models",
    "webhook_models",
]
