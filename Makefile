# Two commands do everything on a fresh machine:
#   make demo   set up, fetch the real clip and model, run the detector sparse, compare with dense
#   make test   set up, then the whole test suite
PYTHON ?= python3
VENV ?= .venv
# The CPU build of PyTorch; on a CUDA machine set TORCH_SPEC to the build you want.
TORCH_SPEC ?= torch==2.13.0
# Exact versions of every dependency (pyproject.toml keeps ranges); how to update: its header.
CONSTRAINTS ?= constraints.txt
BIN := $(VENV)/bin
STAMP := $(VENV)/.passrt-installed
DEMO_POLICY ?= regiondrop
DEMO_FRAMES ?= 200

.PHONY: install demo test clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) "$(TORCH_SPEC)"
	# trackers without its dependencies: it declares opencv-python, which would sit next to our
	# opencv-python-headless (both are `cv2`); the 'track' extra installs the rest of what it needs.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) --no-deps trackers
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e '.[dev,plot,track,triton]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/passrt assets fetch vtest ssdlite-pedestrian
	mkdir -p out
	$(BIN)/passrt run --input vtest --policy $(DEMO_POLICY) --headless --max-frames $(DEMO_FRAMES) \
		--output out/demo.mp4 --json out/demo-run.json
	$(BIN)/passrt bench --input vtest --frames $(DEMO_FRAMES) --policies dense,$(DEMO_POLICY) \
		--json out/demo-bench.json

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
