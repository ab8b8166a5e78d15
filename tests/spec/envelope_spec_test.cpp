// docs/protocol.md section 3, checked against zmqkit's decoder: the exact timestamp range (3.4),
// which field a truncated frame is blamed on (3.3), the ttl cap, and the integer forms accepted.
// Frames are built byte by byte from the spec's grammar, not with the encoder.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <zmqkit/envelope.hpp>

namespace {

std::string be(std::uint64_t v, int bytes) {
  std::string out;
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}

// The 96-bit timestamp form: %xC7 %x0C %xFF nanos32 seconds64.
std::string ts96(std::int64_t seconds, std::uint32_t nanos) {
  return std::string("\xc7\x0c\xff", 3) + be(nanos, 4) + be(static_cast<std::uint64_t>(seconds), 8);
}

// A valid envelope whose timestamp and priority/ttl encodings are given.
std::string envelope_with(const std::string& timestamp, const std::string& priority = "\x04",
                          const std::string& ttl = std::string(1, '\0')) {
  std::string f = "\x99\x01\xa1" "a";  // array of 9, version 1, type "a"
  f += priority + timestamp + ttl;
  f += std::string("\xc4\x10", 2) + std::string(16, '\x07');  // id
  f += std::string("\xc4\x00", 2);                            // correlation_id: empty
  f += "\x80";                                                // headers: {}
  f += std::string("\xc4\x00", 2);                            // body: empty
  return f;
}

std::string field_of(const std::string& frame) {
  try {
    zmqkit::decode(frame);
  } catch (const zmqkit::error& e) {
    return e.field();
  }
  return "(accepted)";
}

std::int64_t seconds_of(const std::string& frame) {
  const auto ns = zmqkit::decode(frame).timestamp.time_since_epoch();
  return std::chrono::duration_cast<std::chrono::seconds>(ns).count();
}

}  // namespace

TEST_CASE("3.4: seconds from -9223372035 to 9223372035 inclusive, any nanoseconds, nothing else") {
  CHECK(field_of(envelope_with(ts96(-9'223'372'035, 0))) == "(accepted)");
  CHECK(seconds_of(envelope_with(ts96(-9'223'372'035, 0))) == -9'223'372'035);  // 1677-09-21T00:12:45Z
  CHECK(field_of(envelope_with(ts96(-9'223'372'035, 999'999'999))) == "(accepted)");
  CHECK(field_of(envelope_with(ts96(9'223'372'035, 999'999'999))) == "(accepted)");  // 2262-04-11T23:47:15.999999999Z
  CHECK(field_of(envelope_with(ts96(-9'223'372'036, 0))) == "timestamp");
  CHECK(field_of(envelope_with(ts96(-9'223'372'036, 999'999'999))) == "timestamp");
  CHECK(field_of(envelope_with(ts96(9'223'372'036, 0))) == "timestamp");
  CHECK(field_of(envelope_with(ts96(0, 1'000'000'000))) == "timestamp");  // nanoseconds >= 1e9
}

TEST_CASE("3.1: the three timestamp forms; 3.3 (zmqkit): ext 8 with a 4- or 8-byte payload too") {
  CHECK(seconds_of(envelope_with(std::string("\xd6\xff", 2) + be(1'700'000'000, 4))) == 1'700'000'000);
  CHECK(seconds_of(envelope_with(std::string("\xd7\xff", 2) + be((5ULL << 34) | 1'700'000'000ULL, 8))) ==
        1'700'000'000);
  CHECK(seconds_of(envelope_with(ts96(-1, 0))) == -1);
  CHECK(seconds_of(envelope_with(std::string("\xc7\x04\xff", 3) + be(7, 4))) == 7);
  CHECK(field_of(envelope_with(std::string("\xc7\x05\xff", 3) + be(7, 5))) == "timestamp");
  CHECK(field_of(envelope_with(std::string("\xd6\x01", 2) + be(7, 4))) == "timestamp");  // not type -1
}

TEST_CASE("3.3: a truncated frame is blamed on the field being read when the bytes ran out") {
  CHECK(field_of(std::string("\x99", 1)) == "version");
  CHECK(field_of(std::string("\x99\x01", 2)) == "type");
  const std::string full = envelope_with(ts96(1, 0));
  CHECK(field_of(full.substr(0, 6)) == "timestamp");  // array, version, "a", priority, 2 bytes of it
  CHECK(field_of(full.substr(0, full.size() - 1)) == "body");
  CHECK(field_of(std::string("\x9f", 1) + full.substr(1)) == "envelope");  // 15 announced, 9 present
  CHECK(field_of(full + "x") == "envelope");                               // trailing bytes
  CHECK(field_of(std::string("\x98", 1) + full.substr(1)) == "envelope");  // 8 elements
}

TEST_CASE("3.1/3.3: any non-negative integer form; wrong types are rejected, never converted") {
  CHECK(zmqkit::decode(envelope_with(ts96(1, 0), std::string("\xd0\x09", 2))).priority == 9);      // int8 9
  CHECK(zmqkit::decode(envelope_with(ts96(1, 0), std::string("\xcd\x00\x05", 3))).priority == 5);  // uint16 5
  CHECK(field_of(envelope_with(ts96(1, 0), std::string("\xd0\xff", 2))) == "priority");  // int8 -1
  CHECK(field_of(envelope_with(ts96(1, 0), "\xc3")) == "priority");                      // true
  CHECK(field_of(envelope_with(ts96(1, 0), "\xa1" "4")) == "priority");                  // "4"
  CHECK(field_of(envelope_with(ts96(1, 0), "\x0a")) == "priority");                      // 10
}

TEST_CASE("3.3: ttl_ms above 9223372036854 is treated as that value") {
  const auto env = zmqkit::decode(envelope_with(ts96(1, 0), "\x04", std::string("\xcf", 1) + be(~0ULL, 8)));
  CHECK(env.ttl.count() == 9'223'372'036'854LL);
}
