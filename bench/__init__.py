"""End-to-end benchmark of the transfer processor, side by side with pgbench: ``python -m bench``.

Drives the system only through its entry points (the Procfile, the HTTP API) and reads Postgres
for the settlement figures and the applied-once checks. See bench/README.md.
"""
