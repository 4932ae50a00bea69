"""The REST API (FastAPI): a thin layer over the case store, datasets, tracing and reports.

`create_app(workspace)` builds the app; `tianluo serve --workspace DIR` runs it with the
investigator UI. docs/api.md is the contract; every endpoint names the permission it
needs and `security.MATRIX` says which roles hold it.
"""

from tianluo.api.app import create_app, permissions
from tianluo.api.workspace import Institution, Workspace, WorkspaceError

__all__ = ["Institution", "Workspace", "WorkspaceError", "create_app", "permissions"]
