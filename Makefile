# Two entry points: `make run` (agent on built-in defaults) and `make test` (everything the
# tests need, then the whole suite). Both create ./.venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Real tools the tests run against (Debian packages; README "What make test installs" says why
# each). Installed for their binaries only: scripts/install-packages.sh upgrades nothing already
# installed and starts or enables no service.
TEST_PACKAGES := prometheus prometheus-node-exporter prometheus-alertmanager \
	prometheus-process-exporter victoria-metrics systemd dbus-daemon chromium openssh-server \
	openssh-client lintian iproute2 wrk

PREFIX ?= /usr/local/lib/hostagent
UNIT_DIR ?= /etc/systemd/system
CONFIG_DIR ?= /etc/hostagent

.PHONY: run test test-deps lint bench install install-relay uninstall clean deb pyz

# Debian's python3 makes venvs only with python3-venv (ensurepip): installed when missing.
$(BIN)/hostagent: pyproject.toml
	$(PYTHON) -m venv $(VENV) >/dev/null 2>&1 || { rm -rf $(VENV); \
		sh scripts/install-packages.sh python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/hostagent
	$(BIN)/hostagent

test-deps:
	sh scripts/install-packages.sh $(TEST_PACKAGES)

lint: $(BIN)/hostagent
	$(BIN)/ruff check agent tests bench packaging
	$(BIN)/mypy

test: test-deps $(BIN)/hostagent lint
	$(BIN)/pytest -q

bench: $(BIN)/hostagent
	$(BIN)/python bench/scrape.py

# Install as a systemd service: a venv under $(PREFIX), config and defaults under /etc (kept
# if present), the unit with its paths pointed at $(PREFIX), then enable and (re)start it: run
# again from a newer checkout, it upgrades. The relay's unit and example config are installed
# too, the relay left off (docs/relay.md).
install: install-relay
	$(PYTHON) -m venv $(PREFIX)
	$(PREFIX)/bin/pip install --quiet .
	install -m 0644 README.md $(PREFIX)/README.md
	install -d -m 0755 $(PREFIX)/docs
	install -m 0644 docs/*.md docs/*.png $(PREFIX)/docs/
	install -d -m 0755 /etc/hostagent
	[ -e /etc/hostagent/hostagent.yml ] || install -m 0644 systemd/hostagent.yml /etc/hostagent/
	[ -e /etc/default/hostagent ] || install -m 0644 systemd/hostagent.default /etc/default/hostagent
	sed 's|/usr/local/lib/hostagent|$(PREFIX)|g' systemd/hostagent.service > $(UNIT_DIR)/hostagent.service
	if [ "$$(systemctl --version | awk 'NR == 1 {print $$2}')" -ge 253 ]; then \
		install -D -m 0644 systemd/hostagent-notify-reload.conf \
			$(UNIT_DIR)/hostagent.service.d/notify-reload.conf; fi
	systemctl daemon-reload
	systemctl enable hostagent.service
	systemctl restart hostagent.service

install-relay:
	install -d -m 0755 $(CONFIG_DIR) $(UNIT_DIR)
	[ -e $(CONFIG_DIR)/relay.yml ] || install -m 0644 systemd/hostagent-relay.yml $(CONFIG_DIR)/relay.yml
	sed -e 's|/usr/local/lib/hostagent|$(PREFIX)|g' -e 's|/etc/hostagent/|$(CONFIG_DIR)/|g' \
		systemd/hostagent-relay.service > $(UNIT_DIR)/hostagent-relay.service

# Undo `make install`: stop and disable the services, remove the units and $(PREFIX). The
# configuration (/etc/hostagent, /etc/default/hostagent) is kept; remove it by hand if unwanted.
uninstall:
	-systemctl disable --now hostagent.service hostagent-relay.service
	rm -f $(UNIT_DIR)/hostagent.service $(UNIT_DIR)/hostagent-relay.service
	-systemctl daemon-reload
	rm -rf $(PREFIX)

# Release artifacts (packaging/build.py): build/hostagent_VERSION_ARCH.deb and ./hostagent.pyz,
# for this machine's architecture and Python. Dependency wheels are cached in build/wheelhouse.
deb: $(BIN)/hostagent
	$(BIN)/python packaging/build.py deb

pyz: $(BIN)/hostagent
	$(BIN)/python packaging/build.py pyz

clean:
	rm -rf $(VENV) build hostagent.pyz *.egg-info .pytest_cache .mypy_cache .ruff_cache
