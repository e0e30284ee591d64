"""Import every model module so that ``Base.metadata`` holds the whole schema."""

from taxaddr.api import models as api_models
from taxaddr.audit import models as audit_models
from taxaddr.cases import models as cases_models
from taxaddr.store import models as store_models

__all__ = ["api_models", "audit_models", "cases_models", "store_models"]
