"""`json:`: a JMESPath expression into a JSON document (HTTP responses, `read:` files).

The expression was compiled once at load (config/schema.py refuses a bad one); what
can still go wrong at run time is the document: a function given the wrong type
(`max(state)` on a string) is a reading error of that check, not a bug.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from .polled import ReadError


@lru_cache(maxsize=1024)
def _compiled(expression: str) -> Any:
    return jmespath.compile(expression)


def search(expression: str, document: Any) -> Any:
    """The expression's result (None when it finds nothing); ReadError when it cannot apply."""
    try:
        return _compiled(expression).search(document)
    except JMESPathError as e:
        raise ReadError(f"json: '{expression}': {str(e).splitlines()[0]}") from None
