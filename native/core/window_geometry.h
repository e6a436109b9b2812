// window_geometry.h: the output size of a sliding window (convolution or pooling) along one axis,
// and the stride the backends then get. The C API applies this rule before any backend sees a
// geometry (api/api.cpp: conv_geometry, pool_geometry; kn_conv2d_output_size and
// kn_pool2d_output_size return it); it is written here once so that code which builds geometries
// without going through the C API (the CUDA emulator tests, native/dev/conv.cu) uses the same rule.
// The caller validates first: sizes positive, padding non-negative, the (dilated) window no larger
// than the padded input, nothing overflowing.
#pragma once

#include <algorithm>
#include <cstdint>

namespace kn {

struct WindowAxis {
    int64_t out;     // output positions along the axis
    int64_t stride;  // the stride as the backends get it (see window_axis)
};

// out = (in + 2 pad - dilated kernel extent) / stride + 1. With a single output position the stride
// is never stepped; one past the padded input is replaced by the smallest stride with that same single
// output, so that no backend multiplies a stride near 2^63 by a row length (found by fuzz_c_api).
inline WindowAxis window_axis(int64_t in, int64_t pad, int64_t kernel, int64_t stride, int64_t dilation = 1) {
    const int64_t slack = in + 2 * pad - (dilation * (kernel - 1) + 1);  // padded input minus the window
    const int64_t out = slack / stride + 1;
    return {out, out == 1 ? std::min(stride, slack + 1) : stride};
}

}  // namespace kn
