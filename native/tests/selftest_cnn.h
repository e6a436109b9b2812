// selftest_cnn.h: the self-test's cases for the CNN layers (selftest_cnn.cpp): convolution
// (forward, backward-data, backward-weights), pooling (max/avg, forward and backward) and batch
// normalization (training/inference forward, backward), plus their error paths.
#pragma once

#include "selftest_harness.h"

namespace selftest {

void test_convolution(Context& cx);
void test_pooling(Context& cx);
void test_batch_norm(Context& cx);
void test_cnn_errors(Context& cx);

}  // namespace selftest
