// thread_pool.hpp: a persistent pool that runs one batch of tasks per call.
//
// Threads are created once. A call publishes a task function and wakes the workers; the
// calling thread runs task 0 itself. Workers spin briefly before sleeping so back-to-back
// steps do not pay a futex wake-up, yet a pool idling between steps (while the policy
// runs) gives its cores back. No allocation per call, no OpenMP.
#pragma once

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

}  // namespace fastrl
