// selftest_gather.h: the self-test's cases for the gather family (selftest_gather.cpp): gather rows
// (index_select along dim 0) and the deterministic scatter-add, and their error paths.
#pragma once

#include "selftest_harness.h"

namespace selftest {

void test_gather(Context& cx);

}  // namespace selftest
