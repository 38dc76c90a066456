"""The bank's domain: models, money, ledger, transfers, identity, audit, locks.

Framework-free on purpose: nothing here imports Flask, Celery or marshmallow, so a
view, a task, a CLI command and a test all drive the same code.
"""
