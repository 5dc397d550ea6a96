#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Harness self-test (make check-harness): its second check fails on purpose;
# the run must fail and name this test and that check.
. "$(dirname "$0")/../lib.sh"
tap_plan 3
check "first check passes" true
check "deliberate failure" false
check "third check passes" true
tap_done
