// buffer_table.h: buffer handles of the C API (api.cpp). A kn_buffer* names a Buffer through a table
// of slots with generations, so that a freed, stale or forged handle is refused instead of read through.
// Only api/ includes this.
#pragma once

#include "backend.h"
#include "error.h"

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

namespace kn::api {

// A buffer. Callers never see its address: a kn_buffer* handle is a never-reused id (see BufferTable),
// so a stale handle (freed, even after its memory went to a new buffer) or a forged one is refused
// instead of being read through. kn_buffer itself stays an incomplete type here on purpose: nothing
// can dereference a handle without going through the table.
struct Buffer {
    Device* device;
    void* memory;   // null when bytes == 0
    int64_t bytes;
    int64_t capacity;  // the block's size class (caching_allocator.h), >= bytes
};

// Live buffers by handle. A handle encodes a slot of this table and the slot's generation:
//     handle = generation << 36 | slot << 8 | kHandleTag
// Freeing bumps the slot's generation, so the old handle never matches again even when the slot and
// the memory go to the next buffer: freeing A, creating B and freeing A again finds no A and leaves B
// alone. Slots live in chunks that are never freed or moved, so a lookup reads them without a lock
// (two acquire loads; a training step makes thousands of calls with several buffers each). The tag
// in the low bits keeps small integers and real (aligned) pointers from ever matching a handle.
// Creating and freeing take a mutex for the free list. A generation wraps after 2^28 reuses of one
// slot; a handle kept that long could then match again.
class BufferTable {
public:
    kn_buffer* add(Buffer* b) {
        std::lock_guard<std::mutex> lock(mutex_);
        uint32_t slot;
        if (!free_slots_.empty()) {
            slot = free_slots_.back();
            free_slots_.pop_back();
        } else {
            if (next_slot_ == kChunkSlots * kChunks)
                kn::fail(KN_ERROR_OUT_OF_MEMORY, "kn_buffer_create: ", next_slot_, " buffers are live, the most handles this library has");
            slot = next_slot_;
            auto& chunk = chunks_[slot / kChunkSlots];
            if (!chunk.load(std::memory_order_relaxed)) chunk.store(new Slot[kChunkSlots], std::memory_order_release);
            ++next_slot_;
        }
        Slot& s = at(slot);
        s.buffer.store(b, std::memory_order_relaxed);
        uint32_t generation = s.generation.load(std::memory_order_relaxed);
        s.live.store(true, std::memory_order_release);
        return reinterpret_cast<kn_buffer*>(static_cast<uintptr_t>(
            uint64_t{generation} << 36 | uint64_t{slot} << 8 | kHandleTag));
    }
    Buffer* find(const kn_buffer* handle) const {
        const Slot* s = slot_of(handle);
        return s ? s->buffer.load(std::memory_order_relaxed) : nullptr;
    }
    // Removes and returns the buffer (nullptr when the handle is not live): exactly one of two racing
    // frees of one handle gets it.
    Buffer* remove(const kn_buffer* handle) {
        std::lock_guard<std::mutex> lock(mutex_);
        Slot* s = const_cast<Slot*>(slot_of(handle));
        if (!s) return nullptr;
        Buffer* b = s->buffer.load(std::memory_order_relaxed);
        s->live.store(false, std::memory_order_relaxed);
        s->generation.store((s->generation.load(std::memory_order_relaxed) + 1) & kGenerationMask, std::memory_order_release);
        free_slots_.push_back(static_cast<uint32_t>((key(handle) >> 8) & kSlotMask));
        return b;
    }

private:
    static_assert(sizeof(uintptr_t) == 8, "buffer handles are 64-bit");
    static constexpr uint64_t kHandleTag = 0x4b;  // 'K'
    static constexpr uint64_t kSlotMask = (uint64_t{1} << 28) - 1, kGenerationMask = (uint64_t{1} << 28) - 1;
    static constexpr uint32_t kChunkSlots = 4096, kChunks = 65536;  // up to 2^28 live buffers
    struct Slot {
        std::atomic<uint32_t> generation{0};
        std::atomic<bool> live{false};
        std::atomic<Buffer*> buffer{nullptr};
    };
    static uint64_t key(const kn_buffer* handle) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(handle)); }
    Slot& at(uint32_t slot) const {
        return chunks_[slot / kChunkSlots].load(std::memory_order_acquire)[slot % kChunkSlots];
    }
    // The slot a handle names, if the handle is well formed, the slot exists, is live, and is still in
    // the handle's generation; otherwise nullptr. Reads only memory this table owns.
    const Slot* slot_of(const kn_buffer* handle) const {
        uint64_t k = key(handle);
        if ((k & 0xff) != kHandleTag) return nullptr;
        uint64_t slot = (k >> 8) & kSlotMask, generation = k >> 36;
        if (generation > kGenerationMask) return nullptr;
        const Slot* chunk = chunks_[slot / kChunkSlots].load(std::memory_order_acquire);
        if (!chunk) return nullptr;
        const Slot& s = chunk[slot % kChunkSlots];
        if (s.generation.load(std::memory_order_acquire) != generation || !s.live.load(std::memory_order_acquire))
            return nullptr;
        return &s;
    }
    std::mutex mutex_;
    std::vector<uint32_t> free_slots_;
    uint32_t next_slot_ = 0;
    std::atomic<Slot*> chunks_[kChunks] = {};
};

inline BufferTable& buffers() {
    static BufferTable* table = new BufferTable();  // never destroyed, like the registry
    return *table;
}

}  // namespace kn::api
