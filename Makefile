# Two entry points: `make run` (agent on built-in defaults) and `make test` (everything the
# tests need, then the whole suite). Both create ./.venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Real tools the tests run against (Debian packages).
TEST_PACKAGES := prometheus prometheus-node-exporter prometheus-alertmanager wrk systemd dbus-daemon \
	chromium openssh-server openssh-client lintian prometheus-process-exporter \
	victoria-metrics

PREFIX ?= /usr/local/lib/hostagent
UNIT_DIR ?= /etc/systemd/system
CONFIG_DIR ?= /etc/hostagent

.PHONY: run test test-deps lint bench install install-relay clean deb pyz

$(BIN)/hostagent: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/hostagent
	$(BIN)/hostagent

test-deps:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(TEST_PACKAGES)

lint: $(BIN)/hostagent
	$(BIN)/ruff check agent tests bench packaging
	$(BIN)/mypy

test: test-deps $(BIN)/hostagent lint
	$(BIN)/pytest -q

bench: $(BIN)/hostagent
	$(BIN)/python bench/scrape.py

# Install as a systemd service: a venv under $(PREFIX), config and defaults under /etc (kept
# if present), the unit with its paths pointed at $(PREFIX), then enable and start it. The
# relay's unit and example config are installed too, the relay left off (README, "Alert relay").
install: install-relay
	$(PYTHON) -m venv $(PREFIX)
	$(PREFIX)/bin/pip install --quiet .
	install -m 0644 README.md $(PREFIX)/README.md
	install -d -m 0755 /etc/hostagent
	[ -e /etc/hostagent/hostagent.yml ] || install -m 0644 systemd/hostagent.yml /etc/hostagent/
	[ -e /etc/default/hostagent ] || install -m 0644 systemd/hostagent.default /etc/default/hostagent
	sed 's|/usr/local/lib/hostagent|$(PREFIX)|g' systemd/hostagent.service > $(UNIT_DIR)/hostagent.service
	systemctl daemon-reload
	systemctl enable --now hostagent.service

install-relay:
	install -d -m 0755 $(CONFIG_DIR) $(UNIT_DIR)
	[ -e $(CONFIG_DIR)/relay.yml ] || install -m 0644 systemd/hostagent-relay.yml $(CONFIG_DIR)/relay.yml
	sed -e 's|/usr/local/lib/hostagent|$(PREFIX)|g' -e 's|/etc/hostagent/|$(CONFIG_DIR)/|g' \
		systemd/hostagent-relay.service > $(UNIT_DIR)/hostagent-relay.service

# Release artifacts (packaging/build.py): build/hostagent_VERSION_ARCH.deb and ./hostagent.pyz,
# for this machine's architecture and Python. Dependency wheels are cached in build/wheelhouse.
deb: $(BIN)/hostagent
	$(BIN)/python packaging/build.py deb

pyz: $(BIN)/hostagent
	$(BIN)/python packaging/build.py pyz

clean:
	rm -rf $(VENV) build hostagent.pyz *.egg-info .pytest_cache .mypy_cache .ruff_cache
