"""How Laiwang's contacts, clusters, AA bills and shares map onto Matrix rooms and events.

Pure code: no I/O, no Synapse imports. Shared by the Synapse module and the commerce bridge.
"""

NAMESPACE = "org.laiwang"
