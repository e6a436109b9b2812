// error.h: how failures travel inside the library. Code throws kn::Error; the C API boundary
// (api.cpp) catches it, stores the message for kn_last_error() and returns the status.
#pragma once

#include "kernels.h"

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace kn {

class Error : public std::runtime_error {
public:
    Error(kn_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
    kn_status status() const { return status_; }

private:
    kn_status status_;
};

// cat("A is ", m, "x", k) -> "A is 3x4": message building without printf format strings.
template <typename... Parts>
std::string cat(Parts&&... parts) {
    std::ostringstream s;
    (s << ... << std::forward<Parts>(parts));
    return s.str();
}

template <typename... Parts>
[[noreturn]] void fail(kn_status status, Parts&&... parts) {
    throw Error(status, cat(std::forward<Parts>(parts)...));
}

}  // namespace kn
