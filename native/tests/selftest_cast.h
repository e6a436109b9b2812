// selftest_cast.h: the self-test's cases for kn_cast (selftest_cast.cpp): every pair of float32,
// int32 and int64 against a host reference of kernels.h's rules, edge values, and the error paths.
#pragma once

#include "selftest_harness.h"

namespace selftest {

void test_cast(Context& cx);

}  // namespace selftest
