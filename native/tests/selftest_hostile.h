// selftest_hostile.h: the self-test's hostile-input cases (selftest_hostile.cpp): the defects a
// probe of the C API found (issue 12), each kept as a regression case.
#pragma once

#include "selftest_harness.h"

namespace selftest {

void test_hostile_input(Context& cx);

}  // namespace selftest
