// core.cpp: the pybind11 face of the simulator; the only file that knows Python exists.
//
// Python (fastrl/env.py) allocates every buffer as a numpy array (or takes the caller's)
// and passes it here; this file checks dtype, shape, contiguity and writability, keeps the
// arrays alive, and hands raw pointers to the C++ Simulator. step() releases the GIL.
//
// One Simulator may be called from several Python threads: reset, step, get_state and
// set_state each hold the simulator's mutex while they run. The mutex is taken only after
// the GIL is released (and nothing inside needs the GIL), so a thread waiting for it never
// blocks a thread that holds it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "checked.hpp"
#include "fastrl/sim.hpp"

namespace py = pybind11;
using fastrl::Simulator;
using fastrl_bindings::checked;
using fastrl_bindings::exclusive;
using fastrl_bindings::shape_str;

void bind_portfolio(py::module_& m);  // core_portfolio.cpp

namespace {

using PySimulator = fastrl_bindings::Held<Simulator>;

template <class T>
const char* dtype_name() {
  return std::is_same<T, double>::value ? "float64"
         : std::is_same<T, int64_t>::value ? "int64"
                                          : "uint64";
}

// Copies of every per-env state vector, keyed by name.
py::dict get_state(PySimulator& s) {
  py::dict out;
  std::vector<std::pair<void*, const void*>> copies;
  std::vector<size_t> sizes;
  s.sim->for_each_state([&](const char* name, auto& v) {
    using T = typename std::decay_t<decltype(v)>::value_type;
    py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
    copies.emplace_back(a.mutable_data(), v.data());
    sizes.push_back(v.size() * sizeof(T));
    out[name] = a;
  });
  exclusive(s, [&] {
    for (size_t k = 0; k < copies.size(); ++k)
      std::memcpy(copies[k].first, copies[k].second, sizes[k]);
  });
  return out;
}

// Checks names, dtypes, shapes and the market-indexing values of `state`, then copies it
// in and rewrites the observation rows. Any problem raises before anything is written.
void set_state(PySimulator& s, const py::dict& state) {
  const auto n = static_cast<py::ssize_t>(s.sim->num_envs());
  std::set<std::string> known;
  std::vector<std::pair<void*, const void*>> copies;
  std::vector<size_t> sizes;
  std::vector<py::array> held;
  const int64_t* new_segment = nullptr;
  const int64_t* new_bar_index = nullptr;
  s.sim->for_each_state([&](const char* name, auto& v) {
    using T = typename std::decay_t<decltype(v)>::value_type;
    known.insert(name);
    if (!state.contains(name))
      throw py::value_error(std::string("state is missing key '") + name + "'");
    py::object value = state[name];
    if (!py::isinstance<py::array>(value))
      throw py::value_error(std::string("state '") + name + "' must be a numpy array, got " +
                            py::str(py::type::of(value).attr("__name__")).cast<std::string>());
    auto a = py::reinterpret_borrow<py::array>(value);
    if (!a.dtype().is(py::dtype::of<T>()) || a.ndim() != 1 || a.shape(0) != n) {
      std::ostringstream msg;
      msg << "state '" << name << "' must be a " << dtype_name<T>() << " array of shape (" << n
          << ",); got " << py::str(a.dtype()).cast<std::string>() << " of shape "
          << shape_str(a);
      throw py::value_error(msg.str());
    }
    // A contiguous copy (no copy at all when the array already is one).
    auto c = py::array_t<T, py::array::c_style>::ensure(a);
    copies.emplace_back(v.data(), c.data());
    sizes.push_back(v.size() * sizeof(T));
    if (std::strcmp(name, "segment") == 0) new_segment = reinterpret_cast<const int64_t*>(c.data());
    if (std::strcmp(name, "bar_index") == 0)
      new_bar_index = reinterpret_cast<const int64_t*>(c.data());
    held.push_back(std::move(c));
  });
  std::vector<std::string> unknown;
  for (auto item : state) {
    const auto key = py::str(item.first).cast<std::string>();
    if (!known.count(key)) unknown.push_back(key);
  }
  if (!unknown.empty()) {
    std::ostringstream msg;
    msg << "state has unknown key" << (unknown.size() > 1 ? "s" : "");
    for (size_t k = 0; k < unknown.size(); ++k) msg << (k ? ", '" : " '") << unknown[k] << "'";
    msg << "; expected exactly the keys of get_state()";
    throw py::value_error(msg.str());
  }
  s.sim->check_state(new_segment, new_bar_index);  // std::invalid_argument -> ValueError
  exclusive(s, [&] {
    for (size_t k = 0; k < copies.size(); ++k)
      std::memcpy(copies[k].first, copies[k].second, sizes[k]);
    s.sim->write_observations();
  });
}

template <class T>
py::array state_view(const std::vector<T>& v, py::handle owner) {
  return fastrl_bindings::read_only_view(v.data(), {static_cast<py::ssize_t>(v.size())}, owner);
}

// The settings both simulators share (fastrl::EpisodeConfig), bound once as their base.
void bind_episode_config(py::module_& m) {
  using fastrl::EpisodeConfig;
  py::class_<EpisodeConfig>(m, "EpisodeConfig")
      .def(py::init<>())
      .def_readwrite("window", &EpisodeConfig::window)
      .def_readwrite("episode_length", &EpisodeConfig::episode_length)
      .def_property(
          "execution", [](const EpisodeConfig& c) { return static_cast<int>(c.execution); },
          [](EpisodeConfig& c, int v) {
            if (v != 0 && v != 1) throw py::value_error("execution must be 0 (next open) or 1");
            c.execution = static_cast<fastrl::Execution>(v);
          })
      .def_readwrite("integer_shares", &EpisodeConfig::integer_shares)
      .def_readwrite("costs", &EpisodeConfig::costs)
      .def_property(
          "reward", [](const EpisodeConfig& c) { return static_cast<int>(c.reward.kind); },
          [](EpisodeConfig& c, int v) {
            if (v < 0 || v > 4) throw py::value_error("reward must be 0, 1, 2, 3 or 4");
            c.reward.kind = static_cast<fastrl::RewardKind>(v);
          })
      .def_property(
          "dsr_eta", [](const EpisodeConfig& c) { return c.reward.dsr_eta; },
          [](EpisodeConfig& c, double v) { c.reward.dsr_eta = v; })
      .def_property(
          "drawdown_penalty", [](const EpisodeConfig& c) { return c.reward.drawdown_penalty; },
          [](EpisodeConfig& c, double v) { c.reward.drawdown_penalty = v; })
      .def_property(
          "turnover_penalty", [](const EpisodeConfig& c) { return c.reward.turnover_penalty; },
          [](EpisodeConfig& c, double v) { c.reward.turnover_penalty = v; })
      .def_property(
          "active_base", [](const EpisodeConfig& c) { return c.reward.active_base; },
          [](EpisodeConfig& c, bool v) { c.reward.active_base = v; })
      .def_property(
          "vol_window", [](const EpisodeConfig& c) { return c.reward.vol_window; },
          [](EpisodeConfig& c, int64_t v) { c.reward.vol_window = v; })
      .def_readwrite("initial_cash", &EpisodeConfig::initial_cash)
      .def_readwrite("equity_floor", &EpisodeConfig::equity_floor)
      .def_readwrite("random_start", &EpisodeConfig::random_start)
      .def_readwrite("min_envs_per_thread", &EpisodeConfig::min_envs_per_thread);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastrl's C++ batched trading simulator (use fastrl.env.TradingVecEnv)";

  py::class_<fastrl::CostModel>(m, "CostModel")
      .def(py::init<>())
      .def_readwrite("buy_rate", &fastrl::CostModel::buy_rate)
      .def_readwrite("sell_rate", &fastrl::CostModel::sell_rate)
      .def_readwrite("brokerage_rate", &fastrl::CostModel::brokerage_rate)
      .def_readwrite("brokerage_cap", &fastrl::CostModel::brokerage_cap)
      .def_readwrite("gst_on_brokerage", &fastrl::CostModel::gst_on_brokerage)
      .def_readwrite("fixed_fee_buy", &fastrl::CostModel::fixed_fee_buy)
      .def_readwrite("fixed_fee_sell", &fastrl::CostModel::fixed_fee_sell);

  bind_episode_config(m);
  py::class_<fastrl::SimConfig, fastrl::EpisodeConfig>(m, "SimConfig")
      .def(py::init<>())
      .def_readwrite("continuous", &fastrl::SimConfig::continuous)
      .def_readwrite("position_levels", &fastrl::SimConfig::position_levels)
      .def_readwrite("min_pos", &fastrl::SimConfig::min_pos)
      .def_readwrite("max_pos", &fastrl::SimConfig::max_pos)
      .def_readwrite("round_robin", &fastrl::SimConfig::round_robin)
      .def_readwrite("square_off", &fastrl::SimConfig::square_off)
      .def_readwrite("short_borrow_rate", &fastrl::SimConfig::short_borrow_rate)
      .def_readwrite("anchored", &fastrl::SimConfig::anchored)
      .def_readwrite("max_underweight", &fastrl::SimConfig::max_underweight);

  py::class_<PySimulator>(m, "Simulator")
      .def(py::init([](py::array open, py::array close, py::array features, py::array offsets,
                       std::vector<std::string> segment_names, const fastrl::SimConfig& config,
                       int64_t num_envs, int num_threads, uint64_t seed, py::dict buffers,
                       py::object session_flags) {
             auto self = std::make_unique<PySimulator>();
             if (features.ndim() != 2) throw py::value_error("features must be a 2-D array [T, F]");
             const py::ssize_t bars = features.shape(0), nfeat = features.shape(1);
             fastrl::MarketView market;
             market.open = checked<double>(open, "open", {bars}, false);
             market.close = checked<double>(close, "close", {bars}, false);
             market.features = checked<float>(features, "features", {bars, nfeat}, false);
             market.offsets = checked<int64_t>(offsets, "offsets", {-1}, false);
             market.num_bars = bars;
             market.num_features = nfeat;
             market.num_segments = offsets.shape(0) - 1;
             if (!session_flags.is_none()) {
               if (!py::isinstance<py::array>(session_flags))
                 throw py::value_error("session_flags must be a numpy uint8 array");
               auto flags = py::reinterpret_borrow<py::array>(session_flags);
               if (!flags.dtype().is(py::dtype::of<uint8_t>()) || flags.ndim() != 1 ||
                   flags.shape(0) != bars || !(flags.flags() & py::array::c_style))
                 throw py::value_error("session_flags must be a C-contiguous uint8 array with "
                                       "one entry per bar");
               market.session_flags = static_cast<const uint8_t*>(flags.data());
               self->keep_alive.push_back(flags);
             }
             fastrl_bindings::check_sizes(num_envs, config);
             const py::ssize_t n = num_envs;
             const py::ssize_t dim = config.window * nfeat + fastrl::kAgentStateDims;
             fastrl::OutputBuffers out;
             auto& held = self->keep_alive;
             fastrl_bindings::episode_buffers(buffers, n, dim, out, held);
             out.ep_position = fastrl_bindings::output_buffer<double>(buffers, "ep_position",
                                                                      {n}, held);
             out.ep_shares =
                 fastrl_bindings::output_buffer<double>(buffers, "ep_shares", {n}, held);
             for (auto& a : {open, close, features, offsets}) self->keep_alive.push_back(a);
             self->sim = std::make_unique<Simulator>(market, std::move(segment_names), config,
                                                     num_envs, num_threads, seed, out);
             return self;
           }),
           py::arg("open"), py::arg("close"), py::arg("features"), py::arg("offsets"),
           py::arg("segment_names"), py::arg("config"), py::arg("num_envs"),
           py::arg("num_threads"), py::arg("seed"), py::arg("buffers"),
           py::arg("session_flags") = py::none())
      .def_property_readonly("num_envs", [](const PySimulator& s) { return s.sim->num_envs(); })
      .def_property_readonly("obs_dim", [](const PySimulator& s) { return s.sim->obs_dim(); })
      .def_property_readonly("num_threads", [](const PySimulator& s) { return s.sim->num_threads(); })
      .def(
          "reset",
          [](PySimulator& s, uint64_t seed) { exclusive(s, [&] { s.sim->reset(seed); }); },
          py::arg("seed"))
      .def(
          "step",
          [](PySimulator& s, const py::array& actions) {
            const py::ssize_t n = s.sim->num_envs();
            if (s.sim->config().continuous) {
              const double* a = checked<double>(actions, "actions", {n}, false);
              exclusive(s, [&] { s.sim->step_continuous(a); });
            } else {
              const int64_t* a = checked<int64_t>(actions, "actions", {n}, false);
              exclusive(s, [&] { s.sim->step_discrete(a); });
            }
          },
          py::arg("actions"), "Steps every env; validates the whole batch first (ValueError).")
      .def("get_state", &get_state,
           "Copies of every per-env state array (a snapshot that determines all future output).")
      .def("set_state", &set_state, py::arg("state"),
           "Loads a get_state() snapshot: checks keys, dtypes, shapes and ranges first "
           "(ValueError naming the key, nothing changed), then copies it in and rewrites obs.")
#define FASTRL_STATE(name) \
  .def_property_readonly(#name, [](py::object self) { \
    return state_view(self.cast<PySimulator&>().sim->name, self); })
      FASTRL_STATE(position) FASTRL_STATE(shares) FASTRL_STATE(cash) FASTRL_STATE(equity)
      FASTRL_STATE(entry_price) FASTRL_STATE(bar_index) FASTRL_STATE(segment)
      FASTRL_STATE(last_trade_bar) FASTRL_STATE(episode_steps) FASTRL_STATE(episode_return)
      FASTRL_STATE(episode_costs) FASTRL_STATE(episode_trades) FASTRL_STATE(peak_equity)
      FASTRL_STATE(dsr_a) FASTRL_STATE(dsr_b) FASTRL_STATE(rng_state)
      FASTRL_STATE(bench_position) FASTRL_STATE(bench_shares) FASTRL_STATE(bench_cash);
#undef FASTRL_STATE

  std::vector<std::string> keys(std::begin(fastrl::kStateKeys), std::end(fastrl::kStateKeys));
  m.attr("STATE_KEYS") = py::tuple(py::cast(keys));
  bind_portfolio(m);
}
