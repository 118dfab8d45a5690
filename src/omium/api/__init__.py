"""The REST service: ``uvicorn --factory omium.api:create_app`` (settings from the environment).

Every route under ``/api/v1`` is tenant-scoped by its bearer API key; another tenant's
execution or workflow is a 404. ``/health``, ``/health/ready`` and ``/metrics`` need no key.
"""

from omium.api.app import create_app
from omium.api.settings import Settings

__all__ = ["Settings", "create_app"]
