// emulator.cpp: runs CUDA kernels on the CPU so their index math, bounds checks, barriers and
// shuffles can be tested on machines without a GPU (see ../README.md).
//
// A launch runs its blocks one after another. The threads of a block are ucontext fibers on the
// calling OS thread; a fiber runs until it reaches __syncthreads or a warp shuffle, then the next
// runnable fiber runs. When every fiber is blocked, the scheduler releases a warp whose 32 lanes all
// wait at a shuffle, or the whole block when every thread waits at __syncthreads. Anything else is a
// bug a GPU would hang on or silently get wrong, and the emulator stops with a message:
//   - __syncthreads reached by only part of the block, or after some threads exited;
//   - a full-warp shuffle with a lane missing (exited, diverged, or a partial warp);
//   - a launch outside CUDA's limits (block > 1024 threads, grid.y/z > 65535, zero-sized grids,
//     more than 48 KiB of dynamic shared memory), reported through cudaGetLastError as on a GPU.
// EMU_ORDER=reverse runs the fibers of a block in reverse order; a result that changes with the
// order reveals a race between two barriers.
#include "cuda_runtime.h"

#include <ucontext.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace emu {

ThreadState* current_thread = nullptr;
uint3 block_idx;
dim3 block_dim, grid_dim;

namespace {

enum class State { runnable, at_block_barrier, at_warp_barrier, done };

struct Fiber {
    ThreadState thread;
    ucontext_t context;
    std::unique_ptr<char[]> stack;
    State state = State::runnable;
    int linear = 0;  // x + y * block.x + z * block.x * block.y: warp = linear / 32
};

constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kShuffleSlot = 16;  // bytes per lane in a warp's exchange area

std::vector<Fiber> fibers;
ucontext_t scheduler;
Fiber* running = nullptr;
const std::function<void()>* kernel_body = nullptr;
std::vector<unsigned char> dynamic_shared_memory;
std::vector<std::vector<unsigned char>> warp_exchange;
bool reverse_order = false;
cudaError_t pending_error = cudaSuccess;

[[noreturn]] void stop(const std::string& why) {
    std::fprintf(stderr, "emulator: %s (block %u,%u,%u of grid %u,%u,%u; block of %u,%u,%u threads)\n", why.c_str(),
                 block_idx.x, block_idx.y, block_idx.z, grid_dim.x, grid_dim.y, grid_dim.z, block_dim.x, block_dim.y,
                 block_dim.z);
    std::abort();
}

void fiber_entry() {
    (*kernel_body)();
    running->state = State::done;
    swapcontext(&running->context, &scheduler);
    stop("a finished thread was resumed");
}

void wait_at(State s) {
    running->state = s;
    swapcontext(&running->context, &scheduler);
}

void run_block(int threads) {
    for (int i = 0; i < threads; ++i) {
        Fiber& f = fibers[i];
        f.state = State::runnable;
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack.get();
        f.context.uc_stack.ss_size = kStackBytes;
        f.context.uc_link = nullptr;
        makecontext(&f.context, fiber_entry, 0);
    }
    const int warps = (threads + 31) / 32;
    for (;;) {
        for (int n = 0; n < threads; ++n) {
            Fiber& f = fibers[reverse_order ? threads - 1 - n : n];
            if (f.state != State::runnable) continue;
            running = &f;
            current_thread = &f.thread;
            swapcontext(&scheduler, &f.context);
        }
        running = nullptr;
        int done = 0, at_block_barrier = 0;
        for (int i = 0; i < threads; ++i) {
            done += fibers[i].state == State::done;
            at_block_barrier += fibers[i].state == State::at_block_barrier;
        }
        if (done == threads) return;
        bool released = false;
        for (int w = 0; w < warps; ++w) {
            const int first = w * 32, end = std::min(threads, first + 32);
            int waiting = 0;
            for (int i = first; i < end; ++i) waiting += fibers[i].state == State::at_warp_barrier;
            if (waiting == 0) continue;
            if (end - first != 32) stop("full-warp shuffle in a partial warp");
            if (waiting == 32) {
                for (int i = first; i < end; ++i) fibers[i].state = State::runnable;
                released = true;
            }
        }
        if (released) continue;
        if (at_block_barrier > 0) {
            if (done > 0) stop("__syncthreads reached after some threads of the block exited");
            if (at_block_barrier != threads) stop("__syncthreads reached by only part of the block");
            for (int i = 0; i < threads; ++i) fibers[i].state = State::runnable;
            continue;
        }
        stop("a warp shuffle waits for lanes that never arrive (exited or diverged)");
    }
}

}  // namespace

cudaError_t& last_error() { return pending_error; }
void* dynamic_shared() { return dynamic_shared_memory.data(); }
void syncthreads() { wait_at(State::at_block_barrier); }
int lane_id() { return running->linear % 32; }

void shuffle_exchange(const void* in, void* out, size_t bytes, int src) {
    if (bytes > kShuffleSlot) stop("shuffle of a value wider than 16 bytes");
    const int warp = running->linear / 32, lane = running->linear % 32;
    std::memcpy(&warp_exchange[warp][lane * kShuffleSlot], in, bytes);
    wait_at(State::at_warp_barrier);  // every lane has deposited its value
    std::memcpy(out, src >= 0 ? &warp_exchange[warp][src * kShuffleSlot] : in, bytes);
    wait_at(State::at_warp_barrier);  // every lane has read before any lane deposits again
}

void run_grid(dim3 grid, dim3 block, size_t shared, const std::function<void()>& body) {
    const char* order = std::getenv("EMU_ORDER");
    reverse_order = order && std::string(order) == "reverse";
    const unsigned long long threads = 1ull * block.x * block.y * block.z;
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 ||
        block.z > 64 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535 || shared > 48 * 1024) {
        std::fprintf(stderr, "emulator: invalid launch: grid (%u,%u,%u), block (%u,%u,%u), %zu bytes of dynamic shared memory\n",
                     grid.x, grid.y, grid.z, block.x, block.y, block.z, shared);
        pending_error = cudaErrorInvalidConfiguration;
        return;
    }
    if (1ull * grid.x * grid.y * grid.z > 1000000) stop("grid too large to emulate in reasonable time");
    while (fibers.size() < threads) {
        fibers.emplace_back();
        fibers.back().stack.reset(new char[kStackBytes]);
    }
    for (unsigned i = 0; i < threads; ++i) {
        fibers[i].linear = static_cast<int>(i);
        fibers[i].thread.thread_idx = uint3{i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
    }
    warp_exchange.assign((threads + 31) / 32, std::vector<unsigned char>(32 * kShuffleSlot));
    dynamic_shared_memory.assign(shared + 16, 0xcd);  // not zeroed: a GPU's shared memory starts as garbage
    block_dim = block;
    grid_dim = grid;
    kernel_body = &body;
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                block_idx = uint3{x, y, z};
                run_block(static_cast<int>(threads));
            }
    current_thread = nullptr;
}

}  // namespace emu
