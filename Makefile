# fer3d_ros: `make test` and `make demo` set everything up in .venv on first use (idempotent).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DELETE_ON_ERROR:

# DDS discovery must never leave this machine.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_LOCALHOST_ONLY := 1
# No thread variables (OMP_NUM_THREADS, ...): tests, benches and the demo get the environment a
# robot's shell has, and each process limits its own pools (parameter library_threads).

VENV ?= .venv
VENV_ABS := $(abspath $(VENV))
PYTHON := $(VENV)/bin/python
BUILD_DIR := build
DEPS_STAMP := $(VENV)/.fer3d-deps
BUILD_STAMP := $(VENV)/.fer3d-build
REQUIREMENTS := requirements/runtime.txt requirements/build.txt requirements/dev.txt
BASELINES := requirements/baselines.txt
PACKAGE_FILES := CMakeLists.txt package.xml cmake/drop_missing_include_dirs.cmake \
	$(shell find msg srv fer3d_ros scripts launch config models -type f -not -name '*.pyc' 2>/dev/null)
# pip's configuration here names optional local indexes; don't print a warning per package.
PIP_NOISE := is ignored: it is neither a file nor a directory

.PHONY: all venv build test demo bench soak clean distclean
all: build

venv: $(DEPS_STAMP)
$(DEPS_STAMP): $(REQUIREMENTS) $(BASELINES)
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet $(addprefix -r ,$(REQUIREMENTS)) 2>&1 | { grep -v '$(PIP_NOISE)' || true; }
	$(PYTHON) -m pip install --quiet --no-deps -r $(BASELINES) 2>&1 | { grep -v '$(PIP_NOISE)' || true; }
	touch $@

# Generate the messages and install the package into the venv (nothing to source afterwards); the
# files of the previous install go first, so that a moved or deleted module cannot linger there.
build: $(BUILD_STAMP)
$(BUILD_STAMP): $(DEPS_STAMP) $(PACKAGE_FILES)
	export PATH="$(VENV_ABS)/bin:$$PATH" AMENT_PREFIX_PATH="$(VENV_ABS)" CMAKE_PREFIX_PATH="$(VENV_ABS)"; \
	cmake -S . -B $(BUILD_DIR) -Wno-dev --log-level=WARNING \
		-DCMAKE_INSTALL_PREFIX="$(VENV_ABS)" \
		-DPython3_EXECUTABLE="$(VENV_ABS)/bin/python" \
		-DCMAKE_PROJECT_INCLUDE="$(abspath cmake/drop_missing_include_dirs.cmake)" \
		-DBUILD_TESTING=OFF > $(BUILD_DIR).log 2>&1 || { cat $(BUILD_DIR).log; exit 1; }; \
	cmake --build $(BUILD_DIR) -j 2 >> $(BUILD_DIR).log 2>&1 || { tail -50 $(BUILD_DIR).log; exit 1; }; \
	if [ -f $(BUILD_DIR)/install_manifest.txt ]; then xargs rm -f < $(BUILD_DIR)/install_manifest.txt; fi; \
	cmake --install $(BUILD_DIR) >> $(BUILD_DIR).log 2>&1 || { tail -50 $(BUILD_DIR).log; exit 1; }
	$(PYTHON) -c 'from fer3d_ros.msg import FaceArray, ExpressionArray, EmotionArray, StressArray'
	@echo "fer3d_ros built into $(VENV) (log: $(BUILD_DIR).log)"
	touch $@

test: $(BUILD_STAMP)
	$(PYTHON) -m pytest test $(if $(CI),-p no:cacheprovider,)

demo: $(BUILD_STAMP)
	$(PYTHON) -m fer3d_ros.tools.demo

bench: $(BUILD_STAMP)
	for script in bench/bench_*.py; do echo "== $$script"; $(PYTHON) $$script; done

# An hour as a robot lives it (bench/soak.py: the launch file per node, a camera of clips and groups of
# people, forgets, lifecycle pauses, bad inputs), then lifecycle rounds on every node while frames flow.
soak: $(BUILD_STAMP)
	$(PYTHON) bench/soak.py $(SOAK_ARGS)
	FER3D_LIFECYCLE_ROUNDS=$${FER3D_LIFECYCLE_ROUNDS:-500} $(PYTHON) -m pytest -q -s test/test_lifecycle.py -k rounds

clean:
	rm -rf $(BUILD_DIR) $(BUILD_DIR).log $(BUILD_STAMP)

distclean: clean
	rm -rf $(VENV)
