// thread_pool.hpp: a persistent pool that runs one batch of tasks per call.
//
// Threads are created once. A call publishes a task function and wakes the workers; the
// calling thread runs task 0 itself. Workers spin briefly before sleeping so back-to-back
// steps do not pay a futex wake-up, yet a pool idling between steps (while the policy
// runs) gives its cores back. No allocation per call, no OpenMP.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace fastrl {

class ThreadPool {
 public:
  using TaskFn = void (*)(void* ctx, int task);

  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(ctx, k) for k in [0, num_tasks), num_tasks <= size(); returns when all are done.
  void run(int num_tasks, TaskFn fn, void* ctx);

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int num_tasks_ = 0;
};

// Splits envs [0, num_envs) into contiguous blocks, at most one per pool thread and none
// smaller than min_envs_per_thread (smaller ones cost more to hand out than to step), and
// runs block(begin, end) for each on the pool. How both simulators hand out a batch.
template <class Block>
void run_blocks(ThreadPool& pool, int64_t num_envs, int64_t min_envs_per_thread,
                const Block& block) {
  const int64_t by_size = (num_envs + min_envs_per_thread - 1) / min_envs_per_thread;
  const int tasks = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(pool.size(), by_size)));
  struct Job {
    const Block* block;
    int64_t num_envs;
    int64_t per_task;
  } job{&block, num_envs, (num_envs + tasks - 1) / tasks};
  pool.run(
      tasks,
      [](void* ctx, int task) {
        const Job& j = *static_cast<const Job*>(ctx);
        const int64_t begin = task * j.per_task;
        (*j.block)(begin, std::min(j.num_envs, begin + j.per_task));
      },
      &job);
}

}  // namespace fastrl
