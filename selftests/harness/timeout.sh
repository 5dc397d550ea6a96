#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Harness self-test (make check-harness): outlives its 3 s timeout and must
# be killed and reported as timed out.
# TIMEOUT=3
. "$(dirname "$0")/../lib.sh"
tap_plan 2
check "starts" true
sleep 600
check "never reached" true
tap_done
