// The one ROUTER-side message rule (`1*identity empty body`) the device, the
// server and the worker share: the route ends at the first empty frame.
#include <doctest/doctest.h>

#include <string>
#include <vector>
#include <zmq.hpp>

#include <zmqkit/internal/routed.hpp>

namespace {
std::vector<zmq::message_t> frames(std::initializer_list<std::string> parts) {
  std::vector<zmq::message_t> out;
  for (const auto& p : parts) out.emplace_back(p.data(), p.size());
  return out;
}
}  // namespace

TEST_CASE("route_length: identities, one empty frame, exactly one body") {
  using zmqkit::internal::route_length;
  CHECK(route_length(frames({"client", "", "body"})) == 1u);
  CHECK(route_length(frames({"hop", "client", "", "body"})) == 2u);
  CHECK(route_length(frames({"client", "", ""})) == 1u);  // an empty body is a body
  CHECK_FALSE(route_length(frames({"", "", "body"})));    // no identity before the delimiter
  CHECK_FALSE(route_length(frames({"client", "body"})));  // no delimiter
  CHECK_FALSE(route_length(frames({"client", "", "body", "more"})));
  CHECK_FALSE(route_length(frames({"client", ""})));
  CHECK_FALSE(route_length(frames({})));
}
