// core_portfolio.cpp: the pybind11 face of the multi-asset PortfolioSim.
//
// Python (fastrl/env_portfolio.py) allocates every buffer; this file checks dtype, shape,
// contiguity and writability, keeps the arrays alive and hands raw pointers to C++. Every
// call that touches the simulator releases the GIL and then takes the object's mutex, so
// two Python threads sharing one simulator take turns instead of racing.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "checked.hpp"
#include "fastrl/sim_portfolio.hpp"

namespace py = pybind11;
using fastrl::PortfolioConfig;
using fastrl::PortfolioSim;
using fastrl_bindings::checked;
using fastrl_bindings::exclusive;
using fastrl_bindings::read_only_view;

namespace {

using PyPortfolio = fastrl_bindings::Held<PortfolioSim>;

py::dtype dtype_of(char kind) {
  switch (kind) {
    case 'q':
      return py::dtype::of<int64_t>();
    case 'Q':
      return py::dtype::of<uint64_t>();
    default:
      return py::dtype::of<double>();
  }
}

std::vector<py::ssize_t> field_shape(const PortfolioSim::StateField& f, int64_t n) {
  if (!f.per_asset) return {static_cast<py::ssize_t>(n)};
  return {static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(f.width)};
}

py::array checked_state(const py::array& a, const PortfolioSim::StateField& f, int64_t n) {
  const auto shape = field_shape(f, n);
  if (f.kind == 'q') checked<int64_t>(a, f.name, shape, false);
  else if (f.kind == 'Q') checked<uint64_t>(a, f.name, shape, false);
  else checked<double>(a, f.name, shape, false);
  return a;
}

}  // namespace

void bind_portfolio(py::module_& m) {
  std::vector<std::string> keys(std::begin(fastrl::kPortfolioStateKeys),
                                std::end(fastrl::kPortfolioStateKeys));
  m.attr("PORTFOLIO_STATE_KEYS") = py::tuple(py::cast(keys));
  // The shared settings come from the EpisodeConfig base (core.cpp binds it first).
  py::class_<PortfolioConfig, fastrl::EpisodeConfig>(m, "PortfolioSimConfig")
      .def(py::init<>())
      .def_readwrite("long_only", &PortfolioConfig::long_only)
      .def_readwrite("max_gross", &PortfolioConfig::max_gross)
      .def_readwrite("max_weight", &PortfolioConfig::max_weight)
      .def_readwrite("trade_band", &PortfolioConfig::trade_band)
      .def_readwrite("anchored", &PortfolioConfig::anchored);

  py::class_<PyPortfolio>(m, "PortfolioSimulator")
      .def(py::init([](py::array open, py::array close, py::array features, py::array tradable,
                       std::vector<std::string> symbols, const PortfolioConfig& config,
                       int64_t num_envs, int num_threads, uint64_t seed, py::dict buffers) {
             auto self = std::make_unique<PyPortfolio>();
             if (features.ndim() != 3)
               throw py::value_error("features must be a 3-D array [T, A, F]");
             const py::ssize_t bars = features.shape(0), assets = features.shape(1),
                               nfeat = features.shape(2);
             fastrl::PanelView panel;
             panel.open = checked<double>(open, "open", {bars, assets}, false);
             panel.close = checked<double>(close, "close", {bars, assets}, false);
             panel.features = checked<float>(features, "features", {bars, assets, nfeat}, false);
             panel.tradable = checked<uint8_t>(tradable, "tradable", {bars, assets}, false);
             panel.num_bars = bars;
             panel.num_assets = assets;
             panel.num_features = nfeat;
             fastrl_bindings::check_sizes(num_envs, config);
             const py::ssize_t n = num_envs;
             const py::ssize_t dim = config.window * assets * nfeat + assets + 1;
             fastrl::PortfolioBuffers out;
             auto& held = self->keep_alive;
             fastrl_bindings::episode_buffers(buffers, n, dim, out, held);
             out.ep_turnover =
                 fastrl_bindings::output_buffer<double>(buffers, "ep_turnover", {n}, held);
             out.step_costs =
                 fastrl_bindings::output_buffer<double>(buffers, "step_costs", {n}, held);
             out.step_turnover =
                 fastrl_bindings::output_buffer<double>(buffers, "step_turnover", {n}, held);
             out.ep_shares = fastrl_bindings::output_buffer<double>(buffers, "ep_shares",
                                                                    {n, assets}, held);
             out.ep_cash = fastrl_bindings::output_buffer<double>(buffers, "ep_cash", {n}, held);
             for (auto& a : {open, close, features, tradable}) self->keep_alive.push_back(a);
             self->sim = std::make_unique<PortfolioSim>(panel, std::move(symbols), config,
                                                        num_envs, num_threads, seed, out);
             return self;
           }),
           py::arg("open"), py::arg("close"), py::arg("features"), py::arg("tradable"),
           py::arg("symbols"), py::arg("config"), py::arg("num_envs"), py::arg("num_threads"),
           py::arg("seed"), py::arg("buffers"))
      .def_property_readonly("num_envs", [](const PyPortfolio& s) { return s.sim->num_envs(); })
      .def_property_readonly("num_assets",
                             [](const PyPortfolio& s) { return s.sim->num_assets(); })
      .def_property_readonly("obs_dim", [](const PyPortfolio& s) { return s.sim->obs_dim(); })
      .def_property_readonly("num_threads",
                             [](const PyPortfolio& s) { return s.sim->num_threads(); })
      .def(
          "reset",
          [](PyPortfolio& s, uint64_t seed) { exclusive(s, [&] { s.sim->reset(seed); }); },
          py::arg("seed"))
      .def(
          "step",
          [](PyPortfolio& s, const py::array& weights, const py::object& orders) {
            const double* w = checked<double>(weights, "actions",
                                              {s.sim->num_envs(), s.sim->num_assets()}, false);
            const uint8_t* o = nullptr;
            if (!orders.is_none()) {
              if (!py::isinstance<py::array>(orders))
                throw py::value_error("orders must be a numpy bool array [N] or None");
              o = checked<uint8_t>(py::reinterpret_borrow<py::array>(orders), "orders",
                                   {s.sim->num_envs()}, false);
            }
            exclusive(s, [&] { s.sim->step(w, o); });
          },
          py::arg("weights"), py::arg("orders") = py::none(),
          "Steps every env with target weights [N, A]; validates the whole batch first. "
          "orders [N] (bool, optional): envs where it is False send no order this step.")
      .def(
          "get_state",
          [](PyPortfolio& s) {
            const int64_t n = s.sim->num_envs();
            std::vector<py::array> arrays;
            py::dict out;
            for (const auto& f : s.sim->state_fields()) {
              py::array a(dtype_of(f.kind), field_shape(f, n));
              out[f.name] = a;
              arrays.push_back(a);
            }
            std::vector<void*> targets;
            for (auto& a : arrays) targets.push_back(a.mutable_data());
            exclusive(s, [&] {
              const auto fields = s.sim->state_fields();
              for (size_t k = 0; k < fields.size(); ++k)
                std::memcpy(targets[k], fields[k].data,
                            static_cast<size_t>(n * fields[k].width) * 8);
            });
            return out;
          },
          "Copies of every per-env state array (name -> numpy array).")
      .def(
          "set_state",
          [](PyPortfolio& s, const py::dict& state) {
            const int64_t n = s.sim->num_envs();
            const auto fields = s.sim->state_fields();
            std::set<std::string> known;
            for (const auto& f : fields) known.insert(f.name);
            for (const auto& item : state) {
              const auto key = py::str(item.first).cast<std::string>();
              if (!known.count(key))
                throw py::value_error("set_state: unknown state array '" + key + "'");
            }
            std::vector<py::array> arrays;
            std::vector<const void*> sources;
            for (const auto& f : fields) {
              if (!state.contains(f.name))
                throw py::value_error(std::string("set_state: missing state array '") + f.name +
                                      "'");
              py::object value = state[f.name];
              if (!py::isinstance<py::array>(value))
                throw py::value_error(std::string("set_state: '") + f.name +
                                      "' must be a numpy array");
              arrays.push_back(checked_state(py::reinterpret_borrow<py::array>(value), f, n));
              sources.push_back(arrays.back().data());
            }
            // set_state checks values first; throws ValueError, changes nothing.
            exclusive(s, [&] { s.sim->set_state(sources); });
          },
          py::arg("state"),
          "Restores every state array (as get_state returned them) and rewrites obs.")
      .def_property_readonly("state_names",
                             [](PyPortfolio& s) {
                               std::vector<std::string> names;
                               for (const auto& f : s.sim->state_fields()) names.push_back(f.name);
                               return names;
                             })
      .def_property_readonly("mark",
                             [](py::object self) {
                               auto& s = self.cast<PyPortfolio&>();
                               const int64_t a = s.sim->num_assets();
                               const auto& mk = s.sim->mark();
                               return read_only_view(mk.data(),
                                           {static_cast<py::ssize_t>(mk.size()) / a,
                                            static_cast<py::ssize_t>(a)},
                                           self);
                             })
      .def_property_readonly("shares", [](py::object self) {
        auto& s = self.cast<PyPortfolio&>();
        return read_only_view(s.sim->shares.data(), {s.sim->num_envs(), s.sim->num_assets()}, self);
      })
#define FASTRL_STATE(name)                                                              \
  .def_property_readonly(#name, [](py::object self) {                                  \
    auto& s = self.cast<PyPortfolio&>();                                               \
    return read_only_view(s.sim->name.data(), {static_cast<py::ssize_t>(s.sim->num_envs())}, self); \
  })
      FASTRL_STATE(cash) FASTRL_STATE(equity) FASTRL_STATE(peak_equity) FASTRL_STATE(bar_index)
      FASTRL_STATE(episode_steps) FASTRL_STATE(episode_return) FASTRL_STATE(episode_costs)
      FASTRL_STATE(episode_turnover) FASTRL_STATE(episode_trades) FASTRL_STATE(bench_cash);
#undef FASTRL_STATE
}
