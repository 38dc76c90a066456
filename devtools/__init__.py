"""Developer tooling: embedded Postgres/Redis, process supervision, the scripted demo.

Not imported by the application; production installs do not need it (requirements-dev.txt).
"""
