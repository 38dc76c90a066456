"""Imports every model module so ``Base.metadata`` describes the whole schema (for Alembic)."""

from core import models
from core.models import Base

__all__ = ["Base", "models"]
