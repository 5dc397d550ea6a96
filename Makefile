# SPDX-License-Identifier: GPL-2.0
#
# dm-remote-cow top-level Makefile.  See README.md and
# Documentation/testing.rst.
#
#   make              build dm-remote-cow.ko and the userspace programs
#   make deps         install what is missing (root; scripts/install-deps.sh)
#   make lint         checkpatch --strict + sparse on the module, cppcheck on
#                     the C programs, shellcheck on the scripts
#   make check        host unit tests + all selftests in one VM boot
#   make vm-test T=x  one selftest (selftests/x.sh) in a fresh VM
#   make vm-shell     interactive VM with the module loaded
#   make demo         tools/demo.sh in the VM
#   make install      module, remote-cowd, remote-cow, man pages, systemd unit,
#                     libvirt hook and OpenNebula driver in /usr/share/remote-cow
#                     (DESTDIR=, PREFIX=/usr)
#   make deb          Debian packages dm-remote-cow-dkms and remote-cow in
#                     build/deb/ (debhelper, dh-dkms), checked by lintian
#   make check-harness  self-test of the test harness
#   make clean / distclean

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
BUILD := $(ROOT)/build

# The Debian headers that linux-headers-amd64 points to; KDIR=... overrides.
KABI ?= $(shell dpkg-query -W -f='$${Depends}' linux-headers-amd64 2>/dev/null | \
	sed -n 's/.*linux-headers-\([^ ,]*-amd64\).*/\1/p')
KDIR ?= $(firstword $(wildcard /usr/src/linux-headers-$(KABI)) \
	$(lastword $(sort $(wildcard /usr/src/linux-headers-6.1.*-amd64))))

MODULE_DIR := dm-remote-cow
MODULE_KO := $(MODULE_DIR)/dm-remote-cow.ko
HAVE_MODULE = $(wildcard $(MODULE_DIR)/Kbuild $(MODULE_DIR)/Makefile)
# Userspace parts, each built by its own Makefile once it exists.
SUBDIRS = $(patsubst %/Makefile,%,$(wildcard userspace/Makefile tools/Makefile selftests/progs/Makefile))

CHECKPATCH := $(BUILD)/checkpatch/checkpatch.pl
T ?=

.PHONY: all module subdirs deps lint lint-checkpatch lint-sparse lint-c lint-sh \
	check check-harness vm-test vm-shell demo clean distclean help kdir

all: module subdirs

kdir:
	@if [ -z "$(KDIR)" ] || [ ! -f "$(KDIR)/Makefile" ]; then \
		echo "No kernel headers found (KDIR='$(KDIR)'): run 'make deps' or set KDIR=" >&2; \
		exit 1; fi

module: kdir
	@if [ -z "$(HAVE_MODULE)" ]; then \
		echo "$(MODULE_DIR)/Kbuild does not exist yet: module not built"; \
	else \
		$(MAKE) -C "$(KDIR)" M="$(ROOT)" modules; \
	fi

subdirs:
	@for d in $(SUBDIRS); do $(MAKE) -C "$$d"; done

deps:
	"$(ROOT)/scripts/install-deps.sh"

# ---------------------------------------------------------------------------
# Lint
# ---------------------------------------------------------------------------
lint: lint-checkpatch lint-sparse lint-c lint-sh

KSRCS = $(filter-out %.mod.c,$(wildcard $(MODULE_DIR)/*.c $(MODULE_DIR)/*.h $(MODULE_DIR)/uapi/*.h))

lint-checkpatch:
	@test -x "$(CHECKPATCH)" || { echo "$(CHECKPATCH) missing: run 'make deps'" >&2; exit 1; }
	@if [ -n "$(KSRCS)" ]; then \
		echo "  CHECKPATCH $(KSRCS)"; \
		"$(CHECKPATCH)" --strict --no-tree --quiet --show-types --terse \
			--ignore FILE_PATH_CHANGES -f $(KSRCS); \
	fi

# Sparse (C=2 checks every file, built or not) with W=1; any warning from
# the compiler, sparse or modpost fails.
lint-sparse: kdir
	@if [ -z "$(HAVE_MODULE)" ]; then echo "no module sources yet: sparse skipped"; exit 0; fi; \
	mkdir -p "$(BUILD)"; \
	$(MAKE) -C "$(KDIR)" M="$(ROOT)" C=2 CHECK=sparse W=1 modules 2>&1 | \
		tee "$(BUILD)/lint-sparse.log"; \
	if grep -E '(warning|error):|WARNING:' "$(BUILD)/lint-sparse.log" >/dev/null; then \
		echo "lint-sparse: warnings found (see above, $(BUILD)/lint-sparse.log)" >&2; exit 1; \
	fi

C_SRCS = $(shell find userspace tools selftests/progs -name '*.c' 2>/dev/null)
C_INCS = $(addprefix -I,$(wildcard $(MODULE_DIR)/uapi include userspace userspace/include userspace/lib tools selftests/progs))

lint-c:
	@if [ -n "$(strip $(C_SRCS))" ]; then \
		echo "  CPPCHECK $(C_SRCS)"; \
		cppcheck --quiet --error-exitcode=1 --inline-suppr \
			--enable=warning,portability,performance \
			--suppress=missingIncludeSystem --std=c11 \
			-D__linux__ -D__x86_64__ $(C_INCS) $(C_SRCS); \
	else echo "no userspace C sources yet: cppcheck skipped"; fi

SH_SRCS = $(shell find scripts selftests tools userspace bench .ci -path '*/build' -prune -o -type f \( -name '*.sh' -o -name run \) -print 2>/dev/null)
# The OpenNebula TM driver's actions and settings (no .sh suffix; the
# actions that are symlinks are checked through their target).
SH_SRCS += $(filter-out %.sh,$(shell find tools/opennebula -type f 2>/dev/null))

lint-sh:
	@echo "  SHELLCHECK $(words $(SH_SRCS)) scripts"
	@shellcheck -x -P SCRIPTDIR $(SH_SRCS)
	@shellcheck -s sh scripts/vm-init

# ---------------------------------------------------------------------------
# Tests in the VM
# ---------------------------------------------------------------------------
# The packages too: selftests/package-install.sh installs them in the VM.
check: deps
	$(MAKE) all deb
	"$(ROOT)/scripts/check.sh"

check-harness: deps
	$(MAKE) all
	"$(ROOT)/scripts/check-harness.sh"

vm-test: all $(if $(filter package-install,$(T)),deb)
	@test -n "$(T)" || { echo "usage: make vm-test T=<selftest name> (e.g. T=module-load)" >&2; exit 2; }
	"$(ROOT)/scripts/check.sh" --no-unit --klog-tail $(T)

vm-shell: all
	"$(ROOT)/scripts/vm-run.sh" --shell

demo: deps
	$(MAKE) all
	"$(ROOT)/scripts/vm-run.sh" --timeout 900 -- "$(ROOT)/tools/demo.sh"

# Every BENCH_* variable (make's or the environment's) passes through to the
# benchmark in the VM: sizes, links, repetitions (each script's header).
VM_BENCH_ENV = env $(foreach v,$(filter BENCH_%,$(.VARIABLES)),'$(v)=$($(v))')

# Remote-cow over a shaped NBD link vs the export read directly
# (Documentation/benchmarks-nbd.rst); figures, not in make check.
.PHONY: bench-nbd
bench-nbd: all
	"$(ROOT)/scripts/vm-run.sh" --timeout 3600 -- $(VM_BENCH_ENV) "$(ROOT)/bench/bench-nbd.sh"

# Figures, not a test (Documentation/benchmarks.rst); not in make check.
.PHONY: bench
bench: all
	"$(ROOT)/scripts/vm-run.sh" --timeout 900 -- $(VM_BENCH_ENV) "$(ROOT)/bench/bench-target.sh"

# remote-cow against dm-clone, dm-thin, nbd-client, nbdkit's cow filter,
# dm-linear and nbdcopy in one VM run; tables and plots written to
# Documentation/benchmarks/ (Documentation/benchmarks-peers.rst); figures,
# not in make check.  dm-clone is built out of tree first (Debian does not
# enable it): measurement only.
PEERS_RUN = $(BUILD)/vm/runs/bench-peers
.PHONY: bench-peers
bench-peers: all
	"$(ROOT)/bench/build-dm-clone.sh" >/dev/null
	rm -rf "$(PEERS_RUN)"
	"$(ROOT)/scripts/vm-run.sh" --timeout 3600 --run-dir "$(PEERS_RUN)" -- \
		$(VM_BENCH_ENV) "$(ROOT)/bench/bench-peers.sh"
	"$(ROOT)/bench/plot-peers.sh" "$(PEERS_RUN)/peers" "$(ROOT)/Documentation/benchmarks"
	cp "$(PEERS_RUN)/output.log" "$(ROOT)/Documentation/benchmarks/peers-run.log"

# Snapshot commit: guest write latency during a commit, commit time against
# the link (Documentation/benchmarks.rst); figures, not in make check.
.PHONY: bench-commit
bench-commit: all
	"$(ROOT)/scripts/vm-run.sh" --timeout 3600 -- $(VM_BENCH_ENV) "$(ROOT)/bench/bench-commit.sh"

# Live migration: time, bytes sent against bytes written, storage downtime,
# guest write latency while mirroring, beside nbdcopy of the whole device,
# over a LAN-like and a WAN-like link shaped on loopback
# (Documentation/benchmarks-migration.rst); figures, not in make check.
.PHONY: bench-migrate
bench-migrate: all
	VM_MEM=$${VM_MEM:-4096} "$(ROOT)/scripts/vm-run.sh" --timeout 7200 -- \
		$(VM_BENCH_ENV) "$(ROOT)/bench/bench-migrate.sh"

# Kernel memory per TiB of virtual device: remote-cow beside dm-clone, dm-era,
# dm-thin and dm-linear (Documentation/benchmarks.rst, "Kernel memory");
# figures, not in make check.  dm-clone is built out of tree first.
.PHONY: bench-memory
bench-memory: all
	"$(ROOT)/bench/build-dm-clone.sh" >/dev/null
	VM_MEM=$${VM_MEM:-3072} "$(ROOT)/scripts/vm-run.sh" --timeout 3600 -- \
		$(VM_BENCH_ENV) "$(ROOT)/bench/bench-memory.sh"

# ---------------------------------------------------------------------------
# Install (DESTDIR for packaging; a real install runs depmod itself)
#
#   make install            both of the following
#   make install-module     dm-remote-cow.ko into /lib/modules/<abi>/extra
#   make install-programs   remote-cowd, remote-cow, man pages, systemd unit,
#                           the example /etc/remote-cow/remote-cowd.conf
#                           (never over an existing one unless DESTDIR is set),
#                           the libvirt hook and the OpenNebula TM driver
#                           under $(PREFIX)/share/remote-cow/ (copies for the
#                           administrator to install where libvirt and
#                           OpenNebula look: nothing in /etc/libvirt or
#                           /var/lib/one is touched)
#
# The Debian packages (make deb) use install-programs; their module goes
# through dkms instead (debian/dm-remote-cow-dkms.dkms).
# ---------------------------------------------------------------------------
DESTDIR ?=
PREFIX ?= /usr
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
UNITDIR ?= /lib/systemd/system
SYSCONFDIR ?= /etc
DATADIR ?= $(PREFIX)/share/remote-cow
ONE_TM := tools/opennebula/tm/remote-cow

.PHONY: install install-module install-programs programs
install: install-module install-programs

# The two programs a host needs (not the selftest helpers).
programs:
	$(MAKE) -C userspace remote-cowd
	$(MAKE) -C tools remote-cow

install-module: module
	@if [ -n "$(HAVE_MODULE)" ]; then \
		$(MAKE) -C "$(KDIR)" M="$(ROOT)" INSTALL_MOD_PATH="$(DESTDIR)" \
			INSTALL_MOD_DIR=extra DEPMOD=/bin/true modules_install; \
		if [ -z "$(DESTDIR)" ]; then depmod -a "$(KABI)"; fi; \
	fi

install-programs: programs
	install -d "$(DESTDIR)$(SBINDIR)" "$(DESTDIR)$(MANDIR)/man8" "$(DESTDIR)$(UNITDIR)" \
		"$(DESTDIR)$(SYSCONFDIR)/remote-cow"
	@for p in userspace/remote-cowd tools/remote-cow; do \
		install -m 0755 "$$p" "$(DESTDIR)$(SBINDIR)/"; \
		echo "  INSTALL $(DESTDIR)$(SBINDIR)/$${p##*/}"; \
	done
	@for m in Documentation/man/*.8; do \
		install -m 0644 "$$m" "$(DESTDIR)$(MANDIR)/man8/"; \
		echo "  INSTALL $(DESTDIR)$(MANDIR)/man8/$${m##*/}"; \
	done
	install -m 0644 tools/systemd/remote-cowd.service "$(DESTDIR)$(UNITDIR)/"
	install -d "$(DESTDIR)$(DATADIR)/libvirt" "$(DESTDIR)$(DATADIR)/opennebula/tm/remote-cow"
	install -m 0755 tools/libvirt/qemu "$(DESTDIR)$(DATADIR)/libvirt/qemu"
	@echo "  INSTALL $(DESTDIR)$(DATADIR)/libvirt/qemu"
	@# The action scripts executable, the sourced files not; the actions
	@# that share a script stay symlinks to it.
	@dst="$(DESTDIR)$(DATADIR)/opennebula/tm/remote-cow"; \
	for f in $(ONE_TM)/*; do \
		if [ -L "$$f" ]; then ln -sfn "$$(readlink "$$f")" "$$dst/$${f##*/}"; \
		elif [ -x "$$f" ]; then install -m 0755 "$$f" "$$dst/"; \
		else install -m 0644 "$$f" "$$dst/"; fi; \
	done; \
	echo "  INSTALL $$dst/"
	@echo "  INSTALL $(DESTDIR)$(UNITDIR)/remote-cowd.service"
	@conf="$(DESTDIR)$(SYSCONFDIR)/remote-cow/remote-cowd.conf"; \
	if [ -z "$(DESTDIR)" ] && [ -e "$$conf" ]; then \
		echo "  KEEP    $$conf (exists)"; \
	else \
		install -m 0644 tools/remote-cowd.conf "$$conf"; \
		echo "  INSTALL $$conf"; \
	fi

# ---------------------------------------------------------------------------
# Debian packages (debian/, Documentation/packaging.rst): built from a copy
# of the tree under build/deb/, so the tree itself is never written; the
# .debs, .dsc, .changes and lintian's report stay in build/deb/.
# ---------------------------------------------------------------------------
.PHONY: deb
deb:
	"$(ROOT)/scripts/build-deb.sh"

clean:
	@if [ -n "$(HAVE_MODULE)" ] && [ -f "$(KDIR)/Makefile" ]; then \
		$(MAKE) -C "$(KDIR)" M="$(ROOT)" clean; fi
	@for d in $(SUBDIRS); do $(MAKE) -C "$$d" clean; done
	rm -rf "$(BUILD)/vm/runs" "$(BUILD)/vm/depmod" "$(BUILD)/check" "$(BUILD)/lint-sparse.log"

# Also drops the downloaded VM kernel and checkpatch (make deps restores them).
distclean: clean
	rm -rf "$(BUILD)"

help:
	@sed -n '3,20p' Makefile
