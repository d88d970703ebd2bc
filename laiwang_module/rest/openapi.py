"""`GET /openapi.json`: the OpenAPI 3.1 description of every endpoint, without authentication.

The description is a package data file (`openapi.json`, next to this module). It cannot drift:
a unit test checks it against the router, and the end-to-end harness checks every response
it gets against it (`tests/harness/openapi.py`).
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING

from laiwang_module.rest.base import JsonDict, Router, Servlet

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest


@cache
def load_description() -> JsonDict:
    """The description, parsed once per process."""
    text = files("laiwang_module.rest").joinpath("openapi.json").read_text("utf-8")
    description: JsonDict = json.loads(text)
    return description


class OpenApiServlet(Servlet):
    def register(self, router: Router) -> None:
        router.add("GET", "/openapi.json", self.on_get)

    async def on_get(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        # Public on purpose: it describes the endpoints, not anybody's data.
        return 200, load_description()
