"""Schema `orchestrator`: pipeline metadata, join state, schedules and the hand-off functions.

Owns the SQL in `orchestrator/store/sql/` and its installer. Must not import spec, compiler,
runtime, ops or cli: the compiler and the runtime both build on it.
"""

from orchestrator.store.install import StoreInstallResult, install, installed_version

__all__ = ["StoreInstallResult", "install", "installed_version"]
