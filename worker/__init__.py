"""The Celery worker: an entry point beside web/.

``celery -A worker`` finds the app in worker/celery.py, built once from the environment.
Nothing is built on import of this package: a task module can be imported (by the API, to
publish) without reading settings.
"""
