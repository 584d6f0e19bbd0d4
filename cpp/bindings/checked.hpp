// checked.hpp: what the binding files (core.cpp, core_portfolio.cpp) share: buffer checks, the
// output buffers both simulators write, read-only state views, and the lock that serialises
// Python threads on one simulator.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fastrl/episode.hpp"

namespace fastrl_bindings {

namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s << (d ? ", " : "") << a.shape(d);
  s << (a.ndim() == 1 ? ",)" : ")");
  return s.str();
}

// Returns a's data pointer after checking it is exactly dtype T, C-contiguous, of `shape`
// (-1 = any extent). uint8_t means numpy bool. Raises ValueError naming the array.
template <class T>
T* checked(const py::array& a, const char* name, std::vector<py::ssize_t> shape, bool writable) {
  // EquivTypes, not identity: an unpickled array (a saved snapshot) has an equal but
  // distinct dtype object.
  const bool dtype_ok =
      std::is_same<T, uint8_t>::value
          ? (a.dtype().kind() == 'b' && a.itemsize() == 1)
          : py::detail::npy_api::get().PyArray_EquivTypes_(a.dtype().ptr(),
                                                           py::dtype::of<T>().ptr());
  bool shape_ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t d = 0; shape_ok && d < shape.size(); ++d)
    shape_ok = shape[d] < 0 || a.shape(static_cast<py::ssize_t>(d)) == shape[d];
  const bool contiguous = (a.flags() & py::array::c_style) != 0;
  if (!dtype_ok || !shape_ok || !contiguous || (writable && !a.writeable())) {
    std::ostringstream msg;
    msg << "array '" << name << "' must be a C-contiguous"
        << (writable ? ", writable " : " ") << py::str(py::dtype::of<T>()).cast<std::string>()
        << " array of shape (";
    for (size_t d = 0; d < shape.size(); ++d)
      msg << (d ? ", " : "") << (shape[d] < 0 ? std::string("any") : std::to_string(shape[d]));
    msg << "); got " << py::str(a.dtype()).cast<std::string>() << " of shape " << shape_str(a)
        << (contiguous ? "" : ", not C-contiguous") << (a.writeable() ? "" : ", read-only");
    throw py::value_error(msg.str());
  }
  return static_cast<T*>(const_cast<void*>(a.data()));
}

// A simulator held by Python, with the arrays its pointers point into.
template <class Sim>
struct Held {
  std::vector<py::array> keep_alive;  // market/panel and output arrays
  std::unique_ptr<Sim> sim;
  std::mutex busy;  // serialises reset/step/get_state/set_state across Python threads
};

// Runs fn() with the GIL released and the simulator's mutex held (in that order): the mutex
// is taken only after the GIL is released, so a thread waiting for it never blocks a thread
// that holds it.
template <class Sim, class Fn>
void exclusive(Held<Sim>& s, Fn&& fn) {
  py::gil_scoped_release release;
  std::lock_guard<std::mutex> lock(s.busy);
  fn();
}

// buffers[name], checked as a writable C-contiguous T array of `shape` and kept alive.
template <class T>
T* output_buffer(const py::dict& buffers, const char* name, std::vector<py::ssize_t> shape,
                 std::vector<py::array>& keep_alive) {
  if (!buffers.contains(name))
    throw py::value_error(std::string("missing output buffer '") + name + "'");
  auto a = py::reinterpret_borrow<py::array>(buffers[name]);
  T* data = checked<T>(a, name, std::move(shape), true);
  keep_alive.push_back(a);
  return data;
}

// Checked before any size is computed from them.
inline void check_sizes(int64_t num_envs, const fastrl::EpisodeConfig& config) {
  if (num_envs < 1) throw py::value_error("num_envs must be >= 1");
  if (config.window < 1) throw py::value_error("window must be >= 1");
}

// The output buffers every simulator writes (fastrl::EpisodeBuffers), n envs of obs_dim.
inline void episode_buffers(const py::dict& buffers, py::ssize_t n, py::ssize_t obs_dim,
                            fastrl::EpisodeBuffers& out, std::vector<py::array>& keep_alive) {
  out.obs = output_buffer<float>(buffers, "obs", {n, obs_dim}, keep_alive);
  out.rewards = output_buffer<double>(buffers, "rewards", {n}, keep_alive);
  out.terminated = output_buffer<uint8_t>(buffers, "terminated", {n}, keep_alive);
  out.truncated = output_buffer<uint8_t>(buffers, "truncated", {n}, keep_alive);
  out.done = output_buffer<uint8_t>(buffers, "done", {n}, keep_alive);
  out.final_obs = output_buffer<float>(buffers, "final_obs", {n, obs_dim}, keep_alive);
  out.ep_return = output_buffer<double>(buffers, "ep_return", {n}, keep_alive);
  out.ep_length = output_buffer<int64_t>(buffers, "ep_length", {n}, keep_alive);
  out.ep_equity = output_buffer<double>(buffers, "ep_equity", {n}, keep_alive);
  out.ep_costs = output_buffer<double>(buffers, "ep_costs", {n}, keep_alive);
  out.ep_trades = output_buffer<int64_t>(buffers, "ep_trades", {n}, keep_alive);
  out.ep_liquidation = output_buffer<double>(buffers, "ep_liquidation", {n}, keep_alive);
}

// A read-only numpy view of simulator-owned memory that keeps `owner` alive.
template <class T>
py::array read_only_view(const T* data, std::vector<py::ssize_t> shape, py::handle owner) {
  std::vector<py::ssize_t> strides(shape.size(), static_cast<py::ssize_t>(sizeof(T)));
  for (size_t d = shape.size(); d-- > 1;) strides[d - 1] = strides[d] * shape[d];
  py::array_t<T> out(shape, strides, data, owner);
  py::detail::array_proxy(out.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return std::move(out);
}

}  // namespace fastrl_bindings
