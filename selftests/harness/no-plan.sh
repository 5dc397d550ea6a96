#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Harness self-test (make check-harness): TAP without a plan must fail.
echo "TAP version 13"
echo "ok 1 - a result without a plan"
