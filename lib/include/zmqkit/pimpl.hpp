// zmqkit/pimpl.hpp — the pointer a public class keeps to its hidden state.
// A class declares `struct impl;` and `pimpl<impl> impl_;` (no destructor or
// moves: the implicit ones are right), and after it, at global namespace scope,
//   extern template struct zmqkit::pimpl_deleter<zmqkit::pubsub::publisher::impl>;
//
// A std::unique_ptr whose deleter is only declared here. Its definition
// (zmqkit/internal/pimpl.hpp) is instantiated once, in the .cpp that defines
// impl; the `extern template` after the class says so, and keeps other .cpp
// files of the library from instantiating it where impl is incomplete. So the
// class's implicit destructor and moves may be inline in the caller's code: the
// class is move-only, its moves are noexcept, and a moved-from one holds nothing.
// Work to do on destruction belongs in impl's destructor.
#pragma once

#include <memory>

namespace zmqkit {

template <class T>
struct pimpl_deleter {
  void operator()(T* p) const noexcept;
};

template <class T>
using pimpl = std::unique_ptr<T, pimpl_deleter<T>>;

}  // namespace zmqkit
