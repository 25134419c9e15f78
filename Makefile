# Every target sets up what it needs by itself (a local .venv, a static busybox for offline images),
# so a fresh clone needs only Python 3.11+, make and Docker.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= config/example.yaml
EXAMPLE_IMAGE ?= busybox:stable

.PHONY: run test unit lint check busybox minisign promtool chromium postgres bench test-faults clean install uninstall test-systemd demo demo-tour demo-down test-demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Offline images are built FROM scratch with the host's static busybox; install it when missing.
busybox:
	@if ! [ -x /bin/busybox ] && ! [ -x /usr/bin/busybox ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's busybox-static (offline images are built from it)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null; \
	  else echo "warning: no static busybox; offline images need: apt-get install busybox-static" >&2; fi; \
	fi

# `serve --store postgresql://` is tested on a throwaway cluster (tests/support/postgres.py) made with the
# server's own initdb/pg_ctl; install Debian's PostgreSQL server when missing. Nothing is started here.
postgres:
	@if ! command -v pg_config >/dev/null || ! [ -x "$$(pg_config --bindir 2>/dev/null)/initdb" ]; then \
	  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      echo "installing Debian's postgresql (the replicated serve is tested against it)"; \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	    else echo "warning: no PostgreSQL server; its tests need: apt-get install postgresql" >&2; fi; \
	  fi; \
	fi

# Signed-bundle tests check interoperability with the real minisign tool; install it when missing.
minisign:
	@if ! command -v minisign >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's minisign (signed bundles are tested against it)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq minisign >/dev/null; \
	  else echo "warning: no minisign; the interoperability tests need: apt-get install minisign" >&2; fi; \
	fi

# The fleet page is checked in a real browser (tests/integration/test_fleet_page.py): Debian's headless
# chromium, installed when missing (the test skips without it, and fails under CI=true).
chromium:
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium (the fleet page is tested in headless chromium)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "warning: no chromium; the fleet page's browser test needs: apt-get install chromium" >&2; fi; \
	fi

# promtool checks contrib/prometheus-alerts.yaml (tests/unit/test_contrib.py): only the promtool binary is
# taken out of Debian's prometheus package (a 19 MB download) into .venv/bin; nothing is installed
# system-wide and no Prometheus server is started. Without apt (or root) the check is skipped.
promtool: $(STAMP)
	@if ! command -v promtool >/dev/null && ! [ -x $(BIN)/promtool ] && command -v apt-get >/dev/null; then \
	  tmp=$$(mktemp -d) && chmod 0755 $$tmp && \
	  if ! (cd $$tmp && apt-get download prometheus >/dev/null 2>&1); then \
	    apt-get update -qq >/dev/null 2>&1; (cd $$tmp && apt-get download prometheus >/dev/null 2>&1); fi; \
	  if ls $$tmp/prometheus_*.deb >/dev/null 2>&1 && \
	    dpkg-deb --fsys-tarfile $$tmp/prometheus_*.deb | tar -xO ./usr/bin/promtool > $(BIN)/promtool.tmp; then \
	    chmod 0755 $(BIN)/promtool.tmp && mv $(BIN)/promtool.tmp $(BIN)/promtool && echo "promtool extracted to $(BIN)/promtool"; \
	  else rm -f $(BIN)/promtool.tmp; echo "warning: could not fetch promtool; its rule check is skipped" >&2; fi; \
	  rm -rf $$tmp; \
	fi

# The agent in the foreground on the examples in config/ (Ctrl-C stops the agent, not the pods).
run: $(STAMP) busybox
	$(BIN)/python -m nodeagent.runtime.example_image $(EXAMPLE_IMAGE)
	$(BIN)/nodeagent --config $(CONFIG) plan
	$(BIN)/nodeagent --config $(CONFIG) --log-format console run

test: $(STAMP) busybox minisign promtool chromium postgres
	$(BIN)/pytest -q

# The fault suite: SIGKILL mid-sync, engine restarts (an engine of its own), broken sources, crash loops,
# an unusable stateDir, and the manifest loader fuzzed with 10,000 generated documents per property.
test-faults: $(STAMP) busybox
	FUZZ_EXAMPLES=10000 $(BIN)/pytest -q -p no:cacheprovider tests/faults

unit: $(STAMP) minisign
	$(BIN)/pytest -q tests/unit

lint: $(STAMP)
	$(BIN)/ruff check nodeagent tests benchmarks
	$(BIN)/ruff format --check nodeagent tests benchmarks
	$(BIN)/mypy --strict
	$(BIN)/lint-imports

check: lint test

# Speed and cost, each next to a baseline measured in the same run (README: Benchmarks).
bench: $(STAMP) busybox
	$(BIN)/python benchmarks/bench.py

# --- install as a systemd service (README: "Install as a service") ------------------------------
# A virtualenv under PREFIX, the config under SYSCONFDIR (an existing one is never overwritten), the
# unit under UNITDIR, enabled and (re)started when systemd runs. Idempotent: run it again to upgrade.
# DESTDIR stages into another root (nothing is started then); PIP_INSTALL_ARGS can point pip at a
# wheelhouse (`--no-index --find-links DIR`) on hosts without an index. Stopping never stops pods.
DESTDIR    ?=
PREFIX     ?= /opt/nodeagent
SYSCONFDIR ?= /etc/nodeagent
UNITDIR    ?= /etc/systemd/system
BINDIR     ?= /usr/local/bin
START      ?= yes
PIP_INSTALL_ARGS ?=
SD_RENDER = sed -e 's|/opt/nodeagent|$(PREFIX)|g' -e 's|/etc/nodeagent|$(SYSCONFDIR)|g'
SD_RUNNING = [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]

install:
	$(PYTHON) -m venv $(DESTDIR)$(PREFIX)
	$(DESTDIR)$(PREFIX)/bin/pip install --quiet --disable-pip-version-check $(PIP_INSTALL_ARGS) .
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)$(SYSCONFDIR)/daemonsets \
	  $(DESTDIR)$(SYSCONFDIR)/manifests $(DESTDIR)$(UNITDIR) $(DESTDIR)$(BINDIR)
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/config.yaml ]; then \
	  echo "keeping the existing $(SYSCONFDIR)/config.yaml"; \
	else $(SD_RENDER) systemd/config.yaml > $(DESTDIR)$(SYSCONFDIR)/config.yaml; \
	  chmod 0644 $(DESTDIR)$(SYSCONFDIR)/config.yaml; echo "installed $(SYSCONFDIR)/config.yaml"; fi
	$(SD_RENDER) systemd/nodeagent.service > $(DESTDIR)$(UNITDIR)/nodeagent.service.tmp
	chmod 0644 $(DESTDIR)$(UNITDIR)/nodeagent.service.tmp
	mv -f $(DESTDIR)$(UNITDIR)/nodeagent.service.tmp $(DESTDIR)$(UNITDIR)/nodeagent.service
	ln -sfn $(PREFIX)/bin/nodeagent $(DESTDIR)$(BINDIR)/nodeagent
	@if $(SD_RUNNING); then \
	  systemctl daemon-reload && systemctl enable --quiet nodeagent.service && \
	  if [ "$(START)" = yes ]; then systemctl restart nodeagent.service && echo "nodeagent.service enabled and started"; \
	  else echo "nodeagent.service enabled; start it with: systemctl start nodeagent"; fi; \
	else echo "systemd is not running here (or DESTDIR is set): run 'systemctl daemon-reload && systemctl enable --now nodeagent' on the target"; fi

# Removes the agent, its unit and an unmodified config; pods keep running (remove them with
# `docker rm -f $$(docker ps -aq --filter label=io.nodeagent.managed=true)`). PURGE=yes also
# removes a modified config, the manifest directories and /var/lib/nodeagent.
uninstall:
	@if $(SD_RUNNING); then \
	  systemctl disable --now --quiet nodeagent.service 2>/dev/null || true; fi
	rm -f $(DESTDIR)$(UNITDIR)/nodeagent.service $(DESTDIR)$(UNITDIR)/nodeagent.service.tmp
	@if $(SD_RUNNING); then systemctl daemon-reload; systemctl reset-failed nodeagent.service 2>/dev/null || true; fi
	@if [ "$$(readlink $(DESTDIR)$(BINDIR)/nodeagent 2>/dev/null)" = "$(PREFIX)/bin/nodeagent" ]; then \
	  rm -f $(DESTDIR)$(BINDIR)/nodeagent; fi
	rm -rf $(DESTDIR)$(PREFIX)
	@cfg=$(DESTDIR)$(SYSCONFDIR)/config.yaml; \
	if [ "$(PURGE)" = yes ]; then rm -rf $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)/var/lib/nodeagent; \
	elif [ -e $$cfg ] && $(SD_RENDER) systemd/config.yaml | cmp -s - $$cfg; then rm -f $$cfg; \
	  rmdir $(DESTDIR)$(SYSCONFDIR)/daemonsets $(DESTDIR)$(SYSCONFDIR)/manifests $(DESTDIR)$(SYSCONFDIR) 2>/dev/null || true; \
	elif [ -e $$cfg ]; then echo "keeping the modified $(SYSCONFDIR)/config.yaml (PURGE=yes removes it)"; fi
	@echo "nodeagent uninstalled; its pods keep running"

# The service in a real systemd: a Debian container (debootstrap, built once and cached) boots systemd
# as PID 1, `make install` runs inside, and the tests drive the unit (tests/systemd/README.md).
# Also runs `systemd-analyze verify` on the unit; installs Debian's systemd package for it if missing.
test-systemd: $(STAMP) busybox
	@if ! command -v systemd-analyze >/dev/null; then \
	  echo "installing Debian's systemd (for systemd-analyze)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; fi
	$(BIN)/pytest -q -p no:cacheprovider tests/systemd

# The three-node demo (README: Try it on three nodes); images are built locally, no registry needed.
demo: $(STAMP)
	bash demo/up.sh

demo-tour: $(STAMP)
	bash demo/tour.sh

demo-down:
	bash demo/down.sh

# The demo as an end-to-end test: up, every tour step, down (always).
test-demo: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider tests/demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .state
