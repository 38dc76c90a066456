# One image for every app process: migrate, web (gunicorn), worker and beat (celery).
# Production dependencies only; the dev/test tools in requirements-dev.txt stay out.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prom

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first, so code edits do not reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt

# The code stays owned by root (read-only for the app user).
COPY . .

# prometheus_client's multiprocess files (compose mounts a fresh tmpfs here as well).
RUN mkdir -p "$PROMETHEUS_MULTIPROC_DIR" && chown app:app "$PROMETHEUS_MULTIPROC_DIR"

USER app

EXPOSE 8000
CMD ["gunicorn", "web:create_app()", "--bind", "0.0.0.0:8000", "--workers", "2"]
