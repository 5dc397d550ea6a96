#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Harness self-test (make check-harness): passes two checks.
. "$(dirname "$0")/../lib.sh"
tap_plan 2
check "true succeeds" true
check_fails "false fails" false
tap_done
