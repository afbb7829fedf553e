"""One JSON document per line, safe for any reader that splits lines."""

from __future__ import annotations

import json
from typing import Any

# json.dumps leaves these as they are with ensure_ascii=False, yet many readers
# (Python's str.splitlines among them) break lines at them; escaped, a record that
# carries one in a name or description stays on its line.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_line(value: Any) -> str:
    """``value`` as JSON on one line, non-ASCII text kept readable."""
    return json.dumps(value, ensure_ascii=False).translate(_LINE_BREAKS)
