"""Test time: every timeout is a multiple of MS, scaled by HEARTH_TESTS_TIMEOUT_FACTOR."""

import os

FACTOR = float(os.environ.get("HEARTH_TESTS_TIMEOUT_FACTOR", "1"))
MS = 0.001 * FACTOR
