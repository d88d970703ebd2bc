"""Development tools used from the checkout: the demo, and the homeserver configs and
processes that the demo, the tests and `bench/` start. Not part of the installed package."""
