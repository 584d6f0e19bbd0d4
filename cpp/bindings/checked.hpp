// checked.hpp: buffer checks shared by the binding files (core.cpp, core_portfolio.cpp).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

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

}  // namespace fastrl_bindings
