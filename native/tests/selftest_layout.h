// selftest_layout.h: the self-test's cases for the layout family (selftest_layout.cpp): the strided
// copy behind permute / transpose / slice / expand, and its error paths.
#pragma once

#include "selftest_harness.h"

namespace selftest {

void test_layout(Context& cx);

}  // namespace selftest
