// thread_pool.h: the CPU backend's one pool of worker threads.
// parallel_for splits [0, n) into contiguous chunks of at least `grain` items and runs fn(begin, end)
// on the pool, the calling thread included, returning when all chunks are done. A persistent pool
// costs a few microseconds per call where spawning threads costs ~50 us each: that matters for the
// small elementwise ops an autograd graph issues by the thousand.
// Threads: KN_NUM_THREADS if set, else std::thread::hardware_concurrency(). Calls made from inside a
// worker (nested parallelism) run serially on that worker.
#pragma once

#include <cstdint>
#include <functional>

namespace kn {

int thread_count();
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

}  // namespace kn
