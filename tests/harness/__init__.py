"""Real homeservers for the tests: processes, users, a small Matrix client, and the steps several
features' tests share (making acquaintances, giving users phone numbers, discovery lookups)."""
