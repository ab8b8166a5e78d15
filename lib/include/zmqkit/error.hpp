// zmqkit/error.hpp — the one exception type zmqkit throws.
//
// Every failure carries a code and the field or peer at fault, so a caller can
// react to the kind of failure and a log line says exactly what was wrong:
//
//   ```cpp
//   zmq::message_t frame;  // as received
//   try { auto env = zmqkit::decode(frame); }
//   catch (const zmqkit::error& e) {
//     if (e.code() == zmqkit::errc::bad_envelope) log("dropped: {}", e.what());
//   }
//   ```
//
// Timeouts and would-block are not errors: they come back as std::optional.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace zmqkit {

enum class errc {
  bad_envelope,     // a frame breaks a ZMK/1 envelope rule; field() names the rule's field
  frame_too_large,  // a frame is over the configured maximum size
  bad_body,         // the body does not convert to the requested type
  bad_config,       // an option or a file given by the user is invalid
  security,         // a key is missing, malformed or its file too open
  protocol,         // a peer broke a pattern's protocol (wrong frame count, ...)
  timeout,          // a blocking operation ran out of time and had no value to return
  request_failed,   // a request got an error reply; field() holds its zmk.error code
  server_fault,     // a request got the error reply `internal`: the server failed, not the request
};

std::string_view to_string(errc code) noexcept;

class error : public std::runtime_error {
 public:
  error(errc code, std::string field, const std::string& message)
      : std::runtime_error(message), code_(code), field_(std::move(field)) {}

  errc code() const noexcept { return code_; }
  // The envelope field, option, file or peer at fault (may be empty).
  const std::string& field() const noexcept { return field_; }

 private:
  errc code_;
  std::string field_;
};

}  // namespace zmqkit
