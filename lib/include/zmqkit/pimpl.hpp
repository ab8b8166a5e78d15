// zmqkit/pimpl.hpp — the pointer a public class keeps to its hidden state.
// A class declares `struct impl;` and `pimpl<impl> impl_;` (no destructor or
// moves: the implicit ones are right), and its .cpp, where impl is complete,
// creates the state with make_pimpl<impl>(...).
//
// A std::unique_ptr whose deleter carries the function that deletes impl, taken
// by make_pimpl where impl's destructor is known. So the class's implicit
// destructor and moves may be inline in the caller's code, which never sees
// impl: the class is move-only, its moves are noexcept, and a moved-from one
// holds nothing. No code can delete an incomplete impl and skip its destructor.
// Work to do on destruction belongs in impl's destructor.
#pragma once

#include <memory>
#include <utility>

namespace zmqkit {

template <class T>
struct pimpl_deleter {
  void (*destroy)(T*) noexcept = nullptr;
  void operator()(T* p) const noexcept { destroy(p); }
};

template <class T>
using pimpl = std::unique_ptr<T, pimpl_deleter<T>>;

// std::make_unique for pimpl; call it where T is complete (the class's .cpp).
template <class T, class... Args>
pimpl<T> make_pimpl(Args&&... args) {
  return pimpl<T>(new T(std::forward<Args>(args)...), pimpl_deleter<T>{[](T* p) noexcept { delete p; }});
}

}  // namespace zmqkit
