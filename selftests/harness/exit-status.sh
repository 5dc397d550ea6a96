#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Harness self-test (make check-harness): all checks pass but the test
# exits 3; that must fail.
echo "TAP version 13"
echo "1..1"
echo "ok 1 - passes, then exits 3"
exit 3
