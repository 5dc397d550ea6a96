#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dm-remote-cow.ko loads with modprobe (pulling in dm-mod and dm-bufio),
# registers the remote-cow target, unloads cleanly and loads again.
. "$(dirname "$0")/lib.sh"

require_vm
tap_plan 8

unload_module >/dev/null 2>&1
kmsg_mark

installed=$(modinfo -n "$RC_MODULE" 2>/dev/null)
if [ -n "$installed" ] && [ -f "$RC_TREE/dm-remote-cow/$RC_MODULE.ko" ]; then
	check_eq "the installed module is this tree's build" \
		"$(sha256_of "$RC_TREE/dm-remote-cow/$RC_MODULE.ko")" "$(sha256_of "$installed")"
else
	tap_not_ok "the installed module is this tree's build" \
		"modinfo -n $RC_MODULE: '${installed}'; built: $(ls "$RC_TREE/dm-remote-cow/$RC_MODULE.ko" 2>&1)"
fi
check "modprobe $RC_MODULE" modprobe "$RC_MODULE" ||
	tap_bail "the module does not load"
check "dm-bufio was loaded as a dependency" grep -q '^dm_bufio ' /proc/modules
targets() { dmsetup targets | awk '{ print $1 }'; }
check_eq "dmsetup targets lists $RC_TARGET" "$RC_TARGET" \
	"$(targets | grep -x -- "$RC_TARGET")"
check "rmmod $RC_MODULE_SYS" rmmod "$RC_MODULE_SYS"
check_fails "the module is gone from /proc/modules" module_loaded
check "the module loads again" modprobe "$RC_MODULE"
check_eq "and registers $RC_TARGET again" "$RC_TARGET" \
	"$(targets | grep -x -- "$RC_TARGET")"

tap_done
