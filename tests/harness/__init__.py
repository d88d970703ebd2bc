"""Real homeservers for the tests: processes, users and a small Matrix client."""
