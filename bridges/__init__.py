"""The commerce service mock and the application-service bridge to it."""
