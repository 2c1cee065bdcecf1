"""Make ``kybern.plugins.resources`` importable while core/plugins.py shadows the plugins package.

The editable install maps ``kybern.plugins`` to plugins/, but the core module kybern/plugins.py
(the plugin manager) is found first. Until that clash is resolved upstream, give the module a
package path so its sub-packages resolve; nothing changes once kybern.plugins is a package.
"""

from __future__ import annotations

from pathlib import Path

import kybern.plugins

if not hasattr(kybern.plugins, "__path__"):
    kybern.plugins.__path__ = [str(Path(__file__).resolve().parents[2] / "plugins")]  # type: ignore[attr-defined]
