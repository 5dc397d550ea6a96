#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Harness self-test (make check-harness, in a VM of its own): crashes the
# kernel (sysrq c).  The VM dies; the run must fail, name this test as not
# finished and show the panic from the console log.
. "$(dirname "$0")/../lib.sh"
require_vm
tap_plan 1
sync
echo c >/proc/sysrq-trigger
check "not reached" true
tap_done
