# plmq: set-up and everyday targets. `make demo` and `make test` work on a fresh Debian machine.
SWIFT ?= swift
# Debian packages the build links against (OpenBLAS for fp32 matmuls, zstd for .plm compression, libcrypto for SHA-256,
# libpng and libjpeg-turbo for reading images, Oniguruma for tokenizer regexes, libedit for `plmq chat`, ffmpeg for video
# files) plus pkg-config, which SwiftPM uses to find them.
DEBIAN_PACKAGES := libopenblas-dev libzstd-dev libssl-dev libpng-dev libjpeg62-turbo-dev libonig-dev libedit-dev ffmpeg pkg-config
EXAMPLE := Examples/tiny-plm

.PHONY: deps build release test demo fixtures clean

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

clean:
	rm -rf .build
