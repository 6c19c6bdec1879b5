# Shortcuts; the scripts in tools/ do the work and need nothing but bash.
.PHONY: setup demo test bench lint
setup:
	tools/setup
demo:
	tools/demo
test:
	tools/test
bench:
	tools/bench
lint: setup
	.venv/bin/ruff check vnicbond tests tools
