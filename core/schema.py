"""Imports every model module so ``Base.metadata`` describes the whole schema (for Alembic)."""

from core import models
from core.identity import models as identity_models
from core.models import Base
from core.webhooks import models as webhook_models

__all__ = ["Base", "identity_models", "models", "webhook_models"]
