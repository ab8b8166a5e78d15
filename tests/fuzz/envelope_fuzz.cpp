// libFuzzer target for the ZMK/1 decoder. Properties checked on every input:
// - decode_view and decode agree on accept/reject and never crash or hang;
// - an accepted envelope re-encodes to a frame that decodes to the same envelope;
// - a body is unpacked under the same limits a receiver uses (no huge allocations).
#include <zmqkit/envelope.hpp>

#include <cstdlib>
#include <map>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view frame(reinterpret_cast<const char*>(data), size);
  const zmqkit::decode_limits limits{.max_frame_bytes = 1 << 16};

  zmqkit::envelope_view view;
  try {
    view = zmqkit::decode_view(frame, limits);
  } catch (const zmqkit::error&) {
    try {
      (void)zmqkit::decode(frame, limits);
    } catch (const zmqkit::error&) {
      return 0;
    }
    std::abort();  // decode accepted what decode_view rejected
  }

  const zmqkit::envelope env = zmqkit::decode(frame, limits);
  if (!(view.to_envelope() == env)) std::abort();
  for (const auto& [key, value] : env.headers)
    if (view.header(key) != std::string_view(value)) std::abort();

  const zmq::message_t again = zmqkit::encode(env);
  if (!(zmqkit::decode(again) == env)) std::abort();

  try {
    (void)env.body_as<std::map<std::string, std::string>>(limits);
  } catch (const zmqkit::error& e) {
    if (e.code() != zmqkit::errc::bad_body) std::abort();
  }
  return 0;
}
