// zmqkit/pimpl.hpp — the pointer a public class keeps to its hidden state.
//
//   ```cpp
//   class publisher {
//     ...
//    private:
//     struct impl;
//     pimpl<impl> impl_;  // no destructor or moves to declare: the implicit ones are right
//   };
//   ```
//
// A std::unique_ptr whose deleter is only declared here: it is defined in
// zmqkit/internal/pimpl.hpp and instantiated in the class's .cpp, where impl is
// complete. So the class's implicit destructor and moves may be inline in the
// caller's code although impl is incomplete there; the class is move-only and its
// moves are noexcept. Work to do on destruction belongs in impl's destructor.
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
