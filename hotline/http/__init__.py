"""The HTTP surface: routes (each translating to and from the services) and middleware."""
