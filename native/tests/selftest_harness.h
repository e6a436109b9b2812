// selftest_harness.h: the plumbing of kernels_selftest, kept apart from the test cases themselves.
//   - Rng: a deterministic splitmix64 generator, seeded per case from the case name, so every device
//     sees the same inputs and a failure reproduces alone.
//   - DeviceArray<T>: a device buffer with kGuard trailing sentinel elements (the idea of ggml's
//     test-backend-ops): after a kernel ran, anything it wrote past the logical end shows up.
//   - compare(): element-wise check of a float32 result against a float64 reference with a per-element
//     tolerance; reports max abs/rel error and the first bad index.
//   - Reporter: counts per device, one line per failing or skipped case, the closing
//     "selftest: N passed, N failed, N skipped". A case is skipped (CaseSkipped) only where a non-CPU
//     backend answers KN_ERROR_NOT_SUPPORTED for an op it has not implemented yet (expect_ok_or_skip);
//     --strict turns those into failures.
//   - Context (the device under test) and the helpers every test file shares: uniform(), nan_filled(),
//     expect_error().
//   - For the CUDA emulator tests (native/dev/emulator), which call the CUDA launchers directly on host
//     memory and count single checks rather than cases: HostBuffer<T> (an exactly-sized host
//     allocation, optionally misaligned) and SELFTEST_EXPECT with its CheckTally.
// Only the public C API (kernels.h) is used, so this program also runs where no .NET exists (the GPU
// machine, under compute-sanitizer).
#pragma once

#include "kernels.h"

#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>
#if defined(_WIN32)
#include <malloc.h>  // _aligned_malloc
#endif

namespace selftest {

// float32 machine epsilon (2^-23): the unit every tolerance below is written in.
constexpr double kEps = FLT_EPSILON;
// Results below this magnitude may legitimately be flushed to zero (FTZ/DAZ on CPUs, -ftz on GPUs).
constexpr double kFlushFloor = 2.0 * FLT_MIN;
// Extra elements after every buffer's logical end, pre-set to a sentinel and checked afterwards.
constexpr int64_t kGuard = 16;

template <typename T> T sentinel();
// A value no kernel computes from the inputs used here; compared bit for bit.
template <> inline float sentinel<float>() { return -31415.927f; }
template <> inline int64_t sentinel<int64_t>() { return -0x5E57E1; }
template <> inline int32_t sentinel<int32_t>() { return -0x5E57E1; }

inline bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }
inline bool same_bits(int64_t a, int64_t b) { return a == b; }
inline bool same_bits(int32_t a, int32_t b) { return a == b; }

inline std::string fmt(double v) {
    char s[64];
    std::snprintf(s, sizeof s, "%.9g", v);
    return s;
}

inline std::string shape_str(const std::vector<int64_t>& dims) {
    std::string s = "[";
    for (size_t i = 0; i < dims.size(); ++i) s += (i ? "," : "") + std::to_string(dims[i]);
    return s + "]";
}

// splitmix64 (Steele, Lea, Flood 2014): one 64-bit state, passes BigCrush, trivially reproducible.
class Rng {
public:
    explicit Rng(uint64_t seed) : state_(seed) {}
    uint64_t next() {
        uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    // Uniform in [0, 1) with 53 random bits.
    double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
    float uniform(double lo, double hi) { return static_cast<float>(lo + (hi - lo) * unit()); }
    int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }

private:
    uint64_t state_;
};

// FNV-1a: a stable seed from a case name.
inline uint64_t seed_of(const std::string& name) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char ch : name) h = (h ^ ch) * 0x100000001b3ull;
    return h;
}

// A harness call (buffer create/write/read) failed, or a kernel returned an error: the case fails
// with this message.
struct CaseFailure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The device does not implement the op yet (KN_ERROR_NOT_SUPPORTED from a non-CPU backend): the case
// is reported as SKIP with this message, neither passed nor failed.
struct CaseSkipped : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline const char* status_name(kn_status s) {
    switch (s) {
        case KN_OK: return "KN_OK";
        case KN_ERROR_INVALID_ARGUMENT: return "KN_ERROR_INVALID_ARGUMENT";
        case KN_ERROR_SHAPE_MISMATCH: return "KN_ERROR_SHAPE_MISMATCH";
        case KN_ERROR_DEVICE_MISMATCH: return "KN_ERROR_DEVICE_MISMATCH";
        case KN_ERROR_OUT_OF_MEMORY: return "KN_ERROR_OUT_OF_MEMORY";
        case KN_ERROR_NOT_FOUND: return "KN_ERROR_NOT_FOUND";
        case KN_ERROR_NOT_SUPPORTED: return "KN_ERROR_NOT_SUPPORTED";
        case KN_ERROR_BACKEND: return "KN_ERROR_BACKEND";
        case KN_ERROR_INTERNAL: return "KN_ERROR_INTERNAL";
    }
    return "(unknown status)";
}

inline void expect_ok(kn_status s, const char* what) {
    if (s != KN_OK)
        throw CaseFailure(std::string(what) + " returned " + status_name(s) + ": " + kn_last_error());
}

// A device buffer holding `size` logical elements followed by kGuard sentinels. `written()` is what
// was uploaded (logical part plus guard), the baseline for untouched-element checks.
template <typename T>
class DeviceArray {
public:
    DeviceArray(kn_device* device, std::vector<T> logical) : size_(static_cast<int64_t>(logical.size())) {
        written_ = std::move(logical);
        written_.resize(static_cast<size_t>(size_ + kGuard), sentinel<T>());
        expect_ok(kn_buffer_create(device, bytes(), &buffer_), "kn_buffer_create");
        kn_status s = kn_buffer_write(buffer_, 0, written_.data(), bytes());
        if (s != KN_OK) {
            kn_buffer_free(buffer_);
            buffer_ = nullptr;
            expect_ok(s, "kn_buffer_write");
        }
    }
    ~DeviceArray() { kn_buffer_free(buffer_); }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;

    kn_buffer* get() const { return buffer_; }
    int64_t size() const { return size_; }
    int64_t bytes() const { return (size_ + kGuard) * static_cast<int64_t>(sizeof(T)); }
    const std::vector<T>& written() const { return written_; }

    // Everything, guard included.
    std::vector<T> read() const {
        std::vector<T> out(static_cast<size_t>(size_ + kGuard));
        expect_ok(kn_buffer_read(buffer_, 0, out.data(), bytes()), "kn_buffer_read");
        return out;
    }

private:
    int64_t size_;
    std::vector<T> written_;
    kn_buffer* buffer_ = nullptr;
};

// First element in [from, to) whose bits differ from what was written, described; "" if none.
template <typename T>
std::string first_changed(const std::vector<T>& got, const std::vector<T>& written, int64_t from, int64_t to,
                          const char* what) {
    for (int64_t i = from; i < to; ++i) {
        if (!same_bits(got[i], written[i]))
            return std::string(what) + " element " + std::to_string(i) + " changed from " +
                   fmt(static_cast<double>(written[i])) + " to " + fmt(static_cast<double>(got[i]));
    }
    return "";
}

// The trailing guard of an output must be untouched (an out-of-bounds write otherwise).
template <typename T>
std::string guard_violation(const std::vector<T>& got, const DeviceArray<T>& a, const char* name) {
    return first_changed(got, a.written(), a.size(), a.size() + kGuard,
                         (std::string("out-of-bounds write: ") + name + " guard").c_str());
}

// An input must come back exactly as written (a kernel wrote into its input otherwise).
template <typename T>
std::string input_violation(const DeviceArray<T>& a, const char* name) {
    std::vector<T> got = a.read();
    return first_changed(got, a.written(), 0, a.size() + kGuard,
                         (std::string("input ") + name + " was modified:").c_str());
}

// Result of checking one output against its reference.
struct Comparison {
    int64_t checked = 0, bad = 0, first_bad = -1;
    double max_abs = 0, max_rel = 0;
    double got_first = 0, want_first = 0, tol_first = 0;

    bool ok() const { return bad == 0; }
    std::string describe(const char* name) const {
        if (ok()) return "";
        return std::string(name) + ": " + std::to_string(bad) + "/" + std::to_string(checked) +
               " bad, max_abs_err=" + fmt(max_abs) + " max_rel_err=" + fmt(max_rel) + ", first bad index " +
               std::to_string(first_bad) + " (got " + fmt(got_first) + ", want " + fmt(want_first) + ", tol " +
               fmt(tol_first) + ")";
    }
};

// got(i) -> float, want(i) -> double, tol(i) -> double (absolute), for i in [0, n).
// A NaN reference requires a NaN result; an infinite one the same infinity; otherwise the result
// must be finite and within tol (plus the flush-to-zero floor).
template <typename Got, typename Want, typename Tol>
Comparison compare(int64_t n, Got got, Want want, Tol tol) {
    Comparison c;
    c.checked = n;
    for (int64_t i = 0; i < n; ++i) {
        double g = static_cast<double>(got(i)), w = want(i), t = tol(i) + kFlushFloor;
        bool good;
        double err;
        if (std::isnan(w)) {
            good = std::isnan(g);
            err = good ? 0.0 : INFINITY;
        } else if (std::isinf(w)) {
            good = g == w;
            err = good ? 0.0 : INFINITY;
        } else {
            err = std::fabs(g - w);
            good = std::isfinite(g) && err <= t;
            if (!std::isfinite(g)) err = INFINITY;
        }
        if (!std::isnan(err)) {
            c.max_abs = std::max(c.max_abs, err);
            c.max_rel = std::max(c.max_rel, err / std::max(std::fabs(w), 1e-30));
        }
        if (!good) {
            if (c.bad == 0) {
                c.first_bad = i;
                c.got_first = g;
                c.want_first = w;
                c.tol_first = t;
            }
            ++c.bad;
        }
    }
    return c;
}

// Collects failure descriptions of one case; the case passes when none were added.
class Problems {
public:
    void add(const std::string& p) {
        if (!p.empty()) list_.push_back(p);
    }
    bool empty() const { return list_.empty(); }
    std::string joined() const {
        std::string s;
        for (const auto& p : list_) s += (s.empty() ? "" : "; ") + p;
        return s;
    }

private:
    std::vector<std::string> list_;
};

class Reporter {
public:
    explicit Reporter(bool verbose, std::string only = "") : verbose_(verbose), only_(std::move(only)) {}

    void begin_device(const std::string& device) {
        counts_.push_back({device, 0, 0, 0.0});
        started_ = std::chrono::steady_clock::now();
    }
    void end_device() {
        counts_.back().seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    }

    // body() returns the problems of the case; a thrown CaseFailure/exception is a problem too.
    template <typename Body>
    void run(const std::string& case_name, Body&& body) {
        if (!only_.empty() && case_name.find(only_) == std::string::npos) return;
        std::string problem;
        try {
            Problems p = body();
            problem = p.joined();
        } catch (const CaseSkipped& e) {
            skip(case_name, e.what());
            return;
        } catch (const std::exception& e) {
            problem = e.what();
        }
        record(case_name, problem);
    }

    void skip(const std::string& case_name, const std::string& reason) {
        if (counts_.empty()) counts_.push_back({"(global)", 0, 0, 0.0});
        auto& c = counts_.back();
        ++c.skipped;
        std::printf("SKIP %s %s: %s\n", c.device.c_str(), case_name.c_str(), one_line(reason).c_str());
        std::fflush(stdout);
    }

    void record(const std::string& case_name, const std::string& problem) {
        if (counts_.empty()) counts_.push_back({"(global)", 0, 0, 0.0});
        auto& c = counts_.back();
        if (problem.empty()) {
            ++c.passed;
            if (verbose_) std::printf("ok   %s %s\n", c.device.c_str(), case_name.c_str());
        } else {
            ++c.failed;
            std::printf("FAIL %s %s: %s\n", c.device.c_str(), case_name.c_str(), one_line(problem).c_str());
        }
        std::fflush(stdout);
    }

    int64_t total_failed() const {
        int64_t f = 0;
        for (const auto& c : counts_) f += c.failed;
        return f;
    }

    void summary() const {
        int64_t passed = 0, failed = 0, skipped = 0;
        std::printf("\n");
        for (const auto& c : counts_) {
            std::printf("%-12s %6d passed, %4d failed, %4d skipped  (%.1f s)\n", c.device.c_str(), c.passed, c.failed,
                        c.skipped, c.seconds);
            passed += c.passed;
            failed += c.failed;
            skipped += c.skipped;
        }
        std::printf("selftest: %" PRId64 " passed, %" PRId64 " failed, %" PRId64 " skipped\n", passed, failed, skipped);
    }

private:
    // One line per failing case: newlines (an OpenCL build log, say) become " | ", and very long
    // messages are cut, so a backend that fails every call still gives a readable report.
    static std::string one_line(const std::string& s) {
        constexpr size_t kMaxLength = 1000;
        std::string out;
        for (char ch : s) {
            if (ch == '\n') {
                if (!out.empty() && out.back() != ' ') out += " | ";
            } else if (ch != '\r') {
                out += ch;
            }
        }
        if (out.size() > kMaxLength) out = out.substr(0, kMaxLength) + " ... (" + std::to_string(s.size()) + " characters)";
        return out;
    }

    struct Count {
        std::string device;
        int passed, failed;
        double seconds;
        int skipped = 0;
    };
    bool verbose_;
    std::string only_;
    std::vector<Count> counts_;
    std::chrono::steady_clock::time_point started_;
};

// The device under test and how to test it.
struct Context {
    kn_device* device;
    std::string name;
    bool quick;
    Reporter& report;
    kn_device* other;  // another device (for DEVICE_MISMATCH and cross-device copies), or null
    kn_device_kind kind = KN_DEVICE_CPU;
    bool strict = false;  // NOT_SUPPORTED is a failure even on a non-CPU device
};

// Like expect_ok, but KN_ERROR_NOT_SUPPORTED from a non-CPU device skips the case (see CaseSkipped):
// for ops whose GPU kernels may not exist yet. The CPU backend must implement everything.
inline void expect_ok_or_skip(const Context& cx, kn_status s, const char* what) {
    if (s == KN_ERROR_NOT_SUPPORTED && cx.kind != KN_DEVICE_CPU && !cx.strict)
        throw CaseSkipped(std::string(what) + " returned KN_ERROR_NOT_SUPPORTED: " + kn_last_error());
    expect_ok(s, what);
}

inline std::vector<float> uniform(Rng& rng, int64_t n, double lo, double hi) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = rng.uniform(lo, hi);
    return v;
}

inline std::vector<float> nan_filled(int64_t n) {
    return std::vector<float>(static_cast<size_t>(n), std::numeric_limits<float>::quiet_NaN());
}

// The status must be `expected`, kn_last_error() non-empty and containing every word of `mentions`,
// and afterwards a valid call on the device must still work.
inline std::string expect_error(Context& cx, kn_status got, kn_status expected, std::vector<std::string> mentions = {}) {
    std::string message = kn_last_error() ? kn_last_error() : "";
    std::string problem;
    if (got != expected)
        problem = std::string("returned ") + status_name(got) + ", want " + status_name(expected) +
                  (message.empty() ? "" : " (message: " + message + ")");
    else if (message.empty())
        problem = "kn_last_error() is empty";
    else
        for (const auto& w : mentions)
            if (message.find(w) == std::string::npos) {
                problem = "message does not mention '" + w + "': " + message;
                break;
            }
    // The library must stay healthy: square 5 numbers.
    std::vector<float> x = {1, -2, 3, -4, 5};
    DeviceArray<float> X(cx.device, x), Y(cx.device, nan_filled(5));
    kn_status s = kn_unary_f32(KN_UNARY_SQUARE, 0.0f, X.get(), Y.get(), 5);
    std::vector<float> y = Y.read();
    if (s != KN_OK || y[0] != 1 || y[1] != 4 || y[2] != 9 || y[3] != 16 || y[4] != 25)
        problem += std::string(problem.empty() ? "" : "; ") + "a valid call after the error failed (" +
                   status_name(s) + " " + kn_last_error() + ")";
    return problem;
}

// ---- The CUDA emulator tests (native/dev/emulator) -----------------------------------------------

// An exactly-sized, 16-byte aligned host allocation (AddressSanitizer reports any access outside it),
// optionally shifted by `shift` elements to make a misaligned pointer.
template <typename T = float>
struct HostBuffer {
    T* raw = nullptr;
    T* p = nullptr;
    size_t n = 0;
    explicit HostBuffer(size_t count, int shift = 0) : n(count) {
        size_t bytes = (count + shift) * sizeof(T);
        bytes = (bytes + 15) / 16 * 16;
        if (bytes == 0) bytes = 16;
#if defined(_WIN32)
        raw = static_cast<T*>(_aligned_malloc(bytes, 16));  // the Windows C runtime has no aligned_alloc
#else
        raw = static_cast<T*>(std::aligned_alloc(16, bytes));
#endif
        p = raw + shift;
    }
#if defined(_WIN32)
    ~HostBuffer() { _aligned_free(raw); }
#else
    ~HostBuffer() { std::free(raw); }
#endif
    HostBuffer(const HostBuffer&) = delete;
    HostBuffer& operator=(const HostBuffer&) = delete;
    T& operator[](size_t i) { return p[i]; }
    void fill(T v) { std::fill(p, p + n, v); }
};

// Counts single checks (SELFTEST_EXPECT) and prints the first kMaxPrinted failures.
struct CheckTally {
    static constexpr int kMaxPrinted = 60;
    int checks = 0, failures = 0;

    // The closing line "N checks, N failures[: ok_message]"; the exit status.
    int finish(const char* ok_message) const {
        std::printf("%d checks, %d failures%s%s\n", checks, failures, failures ? "" : ": ", failures ? "" : ok_message);
        return failures ? 1 : 0;
    }
};

inline CheckTally& check_tally() {
    static CheckTally tally;
    return tally;
}

}  // namespace selftest

// One check: counted; if `cond` is false, a failure printed with its place and the printf-style message.
#define SELFTEST_EXPECT(cond, ...)                                      \
    do {                                                                \
        ::selftest::CheckTally& tally_ = ::selftest::check_tally();     \
        ++tally_.checks;                                                \
        if (!(cond)) {                                                  \
            ++tally_.failures;                                          \
            if (tally_.failures < ::selftest::CheckTally::kMaxPrinted) { \
                std::printf("FAIL %s:%d: ", __FILE__, __LINE__);        \
                std::printf(__VA_ARGS__);                               \
                std::printf("\n");                                      \
            }                                                           \
        }                                                               \
    } while (0)
