// zmqkit/internal/pimpl.hpp — the half of zmqkit/pimpl.hpp for the .cpp that
// defines a class's impl. After impl's definition, at global (or zmqkit's)
// namespace scope, that .cpp instantiates the deleter the callers link to:
//
//   template struct zmqkit::pimpl_deleter<zmqkit::pubsub::publisher::impl>;
//
// (An explicit instantiation may name the private impl: access is not checked there.)
// Internal to the library: public headers never include it.
#pragma once

#include <zmqkit/pimpl.hpp>

#include <utility>

namespace zmqkit {

template <class T>
void pimpl_deleter<T>::operator()(T* p) const noexcept {
  // Fails where a class's header lacks its `extern template` line: deleting an
  // incomplete impl would skip its destructor.
  static_assert(sizeof(T) > 0, "pimpl_deleter instantiated where impl is incomplete");
  delete p;
}

// std::make_unique for pimpl (whose deleter make_unique's result does not convert to).
template <class T, class... Args>
pimpl<T> make_pimpl(Args&&... args) {
  return pimpl<T>(new T(std::forward<Args>(args)...));
}

}  // namespace zmqkit
