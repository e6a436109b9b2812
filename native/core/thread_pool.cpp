#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace kn {
namespace {

thread_local bool in_worker = false;

class ThreadPool {
public:
    explicit ThreadPool(int threads) {
        for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
    }
    ~ThreadPool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& t : workers_) t.join();
    }
    int size() const { return static_cast<int>(workers_.size()) + 1; }

    // Runs chunk(i) for i in [0, chunks), spread over the workers and the caller.
    void run(int64_t chunks, const std::function<void(int64_t)>& chunk) {
        std::unique_lock<std::mutex> submit(submit_mutex_);  // one parallel region at a time
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = &chunk;
            chunks_ = chunks;
            next_.store(0);
            pending_ = chunks;
            error_ = nullptr;
            ++generation_;
        }
        wake_.notify_all();
        in_worker = true;
        drain();
        in_worker = false;
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return pending_ == 0; });
        job_ = nullptr;
        if (error_) std::rethrow_exception(error_);
    }

private:
    void drain() {
        int64_t finished = 0;
        for (;;) {
            int64_t i = next_.fetch_add(1);
            if (i >= chunks_) break;
            try {
                (*job_)(i);
            } catch (...) {
                std::lock_guard<std::mutex> lock(mutex_);
                if (!error_) error_ = std::current_exception();
            }
            ++finished;
        }
        if (finished) {
            std::lock_guard<std::mutex> lock(mutex_);
            pending_ -= finished;
            if (pending_ == 0) done_.notify_all();
        }
    }

    void work() {
        in_worker = true;
        uint64_t seen = 0;
        for (;;) {
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return stopping_ || (generation_ != seen && job_); });
                if (stopping_) return;
                seen = generation_;
            }
            drain();
        }
    }

    std::vector<std::thread> workers_;
    std::mutex submit_mutex_, mutex_;
    std::condition_variable wake_, done_;
    const std::function<void(int64_t)>* job_ = nullptr;
    int64_t chunks_ = 0, pending_ = 0;
    std::atomic<int64_t> next_{0};
    uint64_t generation_ = 0;
    bool stopping_ = false;
    std::exception_ptr error_;
};

int configured_threads() {
    if (const char* env = std::getenv("KN_NUM_THREADS")) {
        int n = std::atoi(env);
        if (n >= 1) return std::min(n, 256);
    }
    unsigned hw = std::thread::hardware_concurrency();
    return hw ? static_cast<int>(hw) : 1;
}

ThreadPool& pool() {
    // Leaked on purpose: joining threads from a static destructor at process exit can deadlock
    // when the runtime (e.g. .NET) has already torn threads down.
    static ThreadPool* p = new ThreadPool(configured_threads());
    return *p;
}

}  // namespace

int thread_count() { return pool().size(); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    int threads = in_worker ? 1 : thread_count();
    int64_t chunks = std::min<int64_t>((n + grain - 1) / grain, threads);
    if (chunks <= 1) {
        fn(0, n);
        return;
    }
    int64_t per = (n + chunks - 1) / chunks;
    pool().run(chunks, [&](int64_t i) {
        int64_t begin = i * per, end = std::min(n, begin + per);
        if (begin < end) fn(begin, end);
    });
}

}  // namespace kn
