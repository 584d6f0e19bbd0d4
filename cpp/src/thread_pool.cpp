// thread_pool.cpp: the persistent worker pool behind Simulator::step.
#include "fastrl/thread_pool.hpp"

#include <stdexcept>

namespace fastrl {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// About tens of microseconds of spinning: covers the gap between back-to-back steps.
constexpr int kSpinIterations = 4000;

}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads < 1) throw std::invalid_argument("num_threads must be >= 1");
  workers_.reserve(static_cast<size_t>(num_threads - 1));
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run(int num_tasks, TaskFn fn, void* ctx) {
  if (num_tasks <= 0) return;
  if (workers_.empty() || num_tasks == 1) {
    for (int k = 0; k < num_tasks; ++k) fn(ctx, k);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = fn;
    ctx_ = ctx;
    num_tasks_ = num_tasks;
    pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  fn(ctx, 0);
  for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < kSpinIterations) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    for (int s = 0; s < kSpinIterations && generation_.load(std::memory_order_acquire) == seen; ++s)
      cpu_relax();
    if (generation_.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
    }
    if (stop_.load(std::memory_order_acquire)) return;
    TaskFn fn;
    void* ctx;
    int num_tasks;
    {
      // The fields were written under the mutex before the generation moved.
      std::lock_guard<std::mutex> lock(mutex_);
      seen = generation_.load(std::memory_order_acquire);
      fn = fn_;
      ctx = ctx_;
      num_tasks = num_tasks_;
    }
    if (index < num_tasks) fn(ctx, index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace fastrl
