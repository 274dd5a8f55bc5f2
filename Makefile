# Two commands do all the set-up: `make run` (embedded mode, the default) and `make test`.
# Needs only python3 (3.11) and make; everything else is installed here.
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: setup run test test-unit kafka-start kafka-stop bench clean

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install -q uv==$(UV_VERSION)

setup: $(UV)
	$(UV) sync --frozen --python 3.11

run: setup  ## embedded mode: collector, processors, chDB warehouse and reports in one process
	$(UV) run --frozen moneytrail serve --host $(HOST) --port $(PORT)

test: setup  ## everything: unit, property and integration tests on real Kafka, Faust and chDB
	UV="$(UV)" bash deploy/local/run-tests.sh

test-unit: setup
	$(UV) run --frozen pytest -q -m "not integration"

kafka-start:
	bash deploy/local/kafka.sh start

kafka-stop:
	bash deploy/local/kafka.sh stop

bench: setup
	$(UV) run --frozen python bench/ingest.py

clean:
	rm -rf .venv .tools .pytest_cache moneytrail-data
