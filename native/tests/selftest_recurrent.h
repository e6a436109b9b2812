// selftest_recurrent.h: the self-test's cases for the recurrent cells (selftest_recurrent.cpp): the
// LSTM and GRU steps forward and backward against a float64 reference, and their error paths.
#pragma once

#include "selftest_harness.h"

namespace selftest {

void test_recurrent(Context& cx);

}  // namespace selftest
