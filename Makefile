.PHONY: demo serve test lint fmt migrate
demo:
	./run.sh demo
serve:
	./run.sh serve
test:
	./run.sh test
lint:
	./run.sh lint
fmt:
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .
migrate:
	.venv/bin/flask --app web create-db && .venv/bin/alembic upgrade head
