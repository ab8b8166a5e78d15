// The worker-protocol codec shared by the reqrep worker (encode) and the queue
// device (parse): every READY form the worker sends is read back as announced,
// and what the device must refuse is refused with a reason.
#include <doctest/doctest.h>

#include <msgpack.hpp>
#include <string>
#include <variant>
#include <vector>

#include <zmqkit/internal/worker_protocol.hpp>

namespace wp = zmqkit::internal::worker_protocol;

namespace {
wp::announcement round_trip(const wp::announcement& a) {
  const auto parsed = wp::parse_ready(wp::encode_ready(a), 64, wp::max_capacity);
  REQUIRE(std::holds_alternative<wp::announcement>(parsed));
  return std::get<wp::announcement>(parsed);
}

std::string refusal(const std::string& frame, std::size_t max_prefixes = 64) {
  const auto parsed = wp::parse_ready(frame, max_prefixes, wp::max_capacity);
  return std::holds_alternative<std::string>(parsed) ? std::get<std::string>(parsed) : std::string();
}
}  // namespace

TEST_CASE("READY: capacity 1 for every type is the bare form; the others read back as announced") {
  CHECK(wp::encode_ready({}).empty());
  const std::vector<std::string> prefixes{"orders.", "payment."};
  auto a = round_trip({.prefixes = prefixes});
  CHECK(a.prefixes == prefixes);
  CHECK(a.capacity == 1);
  CHECK(static_cast<unsigned char>(wp::encode_ready({.prefixes = prefixes})[0]) == 0x92);  // the original array form
  a = round_trip({.capacity = 32});
  CHECK(a.prefixes.empty());
  CHECK(a.capacity == 32);
  a = round_trip({.prefixes = prefixes, .capacity = 1024});
  CHECK(a.prefixes == prefixes);
  CHECK(a.capacity == 1024);
}

TEST_CASE("READY: malformed or past the bounds is refused with a reason") {
  auto map = [](auto&& fill, std::uint32_t n) {
    msgpack::sbuffer b;
    msgpack::packer<msgpack::sbuffer> pk(b);
    pk.pack_map(n);
    fill(pk);
    return std::string(b.data(), b.size());
  };
  CHECK(refusal(wp::encode_ready({.capacity = 2}) + "x") == "READY frame has trailing bytes");
  CHECK(refusal(map([](auto& pk) { pk.pack(std::string("capacity")), pk.pack(0); }, 1)).find("1..1024") !=
        std::string::npos);
  CHECK(refusal(map([](auto& pk) { pk.pack(std::string("capacity")), pk.pack(1025); }, 1)).find("1..1024") !=
        std::string::npos);
  CHECK(refusal(map([](auto& pk) { pk.pack(std::string("capacity")), pk.pack(2), pk.pack(std::string("capacity")),
                                   pk.pack(3); }, 2)) == "READY map repeats 'capacity'");
  CHECK_FALSE(refusal(wp::encode_ready({.prefixes = {"a.", "b.", "c."}}), 2).empty());  // more than allowed
  CHECK_FALSE(refusal(wp::encode_ready({.prefixes = {std::string(256, 't')}})).empty());  // longer than a type
  CHECK_FALSE(refusal("\x01").empty());  // neither an array nor a map
  CHECK_FALSE(refusal("\xc1").empty());  // not msgpack
}
