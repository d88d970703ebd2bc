"""Base of the module's caches built on Synapse's `@cached` descriptors.

`@cached` needs `server_name` and `clock` on its owner. Register each cached method with
`api.register_cached_function(...)` at start-up and drop entries with `api.invalidate_cache(...)`,
which reaches every worker: a cache here is never the authority, the database is.
"""

from __future__ import annotations

from synapse.module_api import ModuleApi

from laiwang_module.synapse_compat import module_clock


class ModuleCache:
    def __init__(self, api: ModuleApi):
        self.server_name = api.server_name
        self.clock = module_clock(api)
