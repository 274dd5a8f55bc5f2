# Two commands do all the set-up: `make demo` (a realistic business loaded and served on the
# embedded default) and `make test`. `make run` serves your own data, empty at first.
# Needs only python3 (3.11) and make; everything else is installed here.
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: setup demo run test test-unit kafka-start kafka-stop bench clean

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install -q uv==$(UV_VERSION)

setup: $(UV)
	$(UV) sync --frozen --python 3.11

demo: setup  ## Mebel Almaty: 90 days of ads, visits, leads, deals and payments loaded through the API, dashboard served
	$(UV) run --frozen moneytrail demo --host $(HOST) --port $(PORT)

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

bench: setup  ## prints numbers: ingest vs a raw ASGI ceiling, the whole pipeline (distributed vs embedded), the step chain, the channel report on 10M touches
	$(UV) run --frozen python bench/ingest.py
	$(UV) run --frozen python bench/pipeline.py
	$(UV) run --frozen python bench/processors.py
	$(UV) run --frozen python bench/reports.py
	$(UV) run --frozen python bench/datadriven.py

clean:
	rm -rf .venv .tools .pytest_cache moneytrail-data moneytrail-demo
