"""The coordinator's REST API (FastAPI): `create_app(node)`.

- `app`: the app factory, error handlers, optional dashboard router
- `auth`: bearer tokens, roles viewer/operator, how callers are named in the audit log
- `derive`: pure rows for display (VM states, grid, groups, events), shared with the dashboard
- `routes/`: one router per resource
- `writes`: audited compare-and-set writes of operator intents
"""

from coordinator.api.app import create_app

__all__ = ["create_app"]
