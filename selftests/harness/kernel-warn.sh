#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Harness self-test (make check-harness): its checks pass, but a kernel
# WARNING appears in the log while it runs (written through /dev/kmsg: the
# check reads the log text, so this is what a real WARN_ON looks like to
# it); the test must fail because of the kernel log.
. "$(dirname "$0")/../lib.sh"
require_vm
tap_plan 1
check "write a WARNING line to the kernel log" \
	sh -c 'echo "WARNING: CPU: 0 PID: $$ at harness-selftest/kernel-warn.sh:1 fake+0x0/0x0" >/dev/kmsg'
tap_done
