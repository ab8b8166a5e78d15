#include <zmqkit/error.hpp>

namespace zmqkit {

std::string_view to_string(errc code) noexcept {
  switch (code) {
    case errc::bad_envelope: return "bad envelope";
    case errc::frame_too_large: return "frame too large";
    case errc::bad_body: return "bad body";
    case errc::bad_config: return "bad configuration";
    case errc::security: return "security";
    case errc::protocol: return "protocol violation";
    case errc::timeout: return "timeout";
    case errc::request_failed: return "request failed";
    case errc::server_fault: return "server fault";
  }
  return "unknown";
}

}  // namespace zmqkit
