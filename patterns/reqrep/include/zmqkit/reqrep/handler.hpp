// zmqkit/reqrep/handler.hpp — what a worker or server runs for each request.
//
//   ```cpp
//   zmqkit::reqrep::handler h = [](const zmqkit::envelope& req) {
//     if (req.body.empty()) throw zmqkit::reqrep::handler_error("bad-request", "empty body");
//     return zmqkit::make_reply(req, "echo.done", req.body_as<std::string>());
//   };
//   ```
//
// A handler returns the reply envelope (its correlation_id is set to the
// request's id if left empty). Throwing handler_error answers an error reply
// with the handler's code; a zmqkit::error{bad_body} (a body_as<T>() that
// failed: the requester's mistake) answers `bad-request`; any other exception is
// a server fault and answers `internal`; both with the exception's text as
// zmk.reason. A handler never crashes or silences a worker.
#pragma once

#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>
#include <zmqkit/envelope.hpp>

namespace zmqkit::reqrep {

using handler = std::function<envelope(const envelope& request)>;

// For plain (non-envelope) bodies from ZeroMQ-guide clients: bytes in, bytes out.
using plain_handler = std::function<std::string(std::string_view body)>;

// Thrown by a handler to answer an error reply with its own code.
class handler_error : public std::runtime_error {
 public:
  handler_error(std::string code, const std::string& reason)
      : std::runtime_error(reason), code_(std::move(code)) {}
  handler_error(reply_error code, const std::string& reason)
      : handler_error(std::string(to_string(code)), reason) {}
  const std::string& code() const noexcept { return code_; }

 private:
  std::string code_;
};

}  // namespace zmqkit::reqrep
