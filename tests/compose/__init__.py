"""The `docker compose up` test's environment: a private Docker engine and local stand-in images.

Test-only: users pull the real images (README "With Docker").
"""
