# The two set-up commands of the README:
#   make run   install what running needs, build, start the service on the default model
#   make test  install dependencies, build, run every test (unit, sanitizer, API, tools)
BUILD ?= build
MODEL ?= models/clmr-default.safetensors
ARGS ?=

.PHONY: all deps deps-run build run test test-quick format clean bench

all: build

deps:
	@scripts/install-deps.sh

# Only what building and running the service needs (no test or dataset tools).
deps-run:
	@scripts/install-deps.sh --runtime-only

$(BUILD)/build.ninja:
	meson setup $(BUILD)

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: deps-run build
	@scripts/run-service.sh $(BUILD)/clmrd $(MODEL) $(ARGS)

test: deps build
	@tests/run_all.sh $(BUILD)

# Unit, API and tool tests of the normal build only (no sanitizer, fuzzing or container stages).
test-quick: build
	@CLMR_SKIP_SANITIZE=1 CLMR_SKIP_TSAN=1 CLMR_SKIP_FUZZ=1 CLMR_SKIP_DEPLOY=1 tests/run_all.sh $(BUILD)

bench: build
	@bench/run.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan
