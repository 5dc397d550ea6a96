#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Harness self-test (make check-harness): its second and fourth checks fail
# on purpose; the run must fail and name this test and those checks, and
# show its last lines under "== failed:" once.
. "$(dirname "$0")/../lib.sh"
tap_plan 4
check "first check passes" true
check "deliberate failure" false
check "third check passes" true
check "second deliberate failure" false
tap_done
