// The tool's JSON views: base64, RFC 3339, msgpack <-> JSON, envelope <-> JSON.
#include <doctest/doctest.h>

#include <json_codec.hpp>

using namespace zmqkit::tool;
using namespace std::chrono_literals;

TEST_CASE("base64 follows RFC 4648") {
  const std::pair<std::string, std::string> vectors[] = {{"", ""},
                                                         {"f", "Zg=="},
                                                         {"fo", "Zm8="},
                                                         {"foo", "Zm9v"},
                                                         {"foob", "Zm9vYg=="},
                                                         {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    CHECK(base64_encode(plain) == encoded);
    CHECK(base64_decode(encoded) == plain);
  }
  CHECK(base64_decode("AP8=") == std::string("\x00\xff", 2));
  for (const char* bad : {"Zg=", "Z===", "Zm9v!", "Zg==Zg==", "=Zg="}) CHECK(!base64_decode(bad));
}

TEST_CASE("timestamps are RFC 3339 UTC with nanoseconds") {
  using zmqkit::wall_time;
  CHECK(format_rfc3339(wall_time(1500ms)) == "1970-01-01T00:00:01.500000000Z");
  CHECK(format_rfc3339(wall_time(-1ns)) == "1969-12-31T23:59:59.999999999Z");
  const wall_time t(1'795'186'352'123'456'789ns);
  CHECK(format_rfc3339(t) == "2026-11-20T14:52:32.123456789Z");
  CHECK(parse_rfc3339(format_rfc3339(t)) == t);
  CHECK(parse_rfc3339("2026-11-20T15:52:32.123456789+01:00") == t);
  CHECK(parse_rfc3339("1970-01-01T00:00:01Z") == wall_time(1s));
  CHECK(parse_rfc3339("1970-01-01T00:00:01.5Z") == wall_time(1500ms));
  for (const char* bad :
       {"", "1970-01-01", "1970-01-01T00:00:01", "1970-13-01T00:00:01Z", "1970-02-30T00:00:00Z",
        "1970-01-01T00:00:01.Z", "1970-01-01T00:00:01.1234567891Z", "1970-01-01T00:00:01Zjunk"})
    CHECK_MESSAGE(!parse_rfc3339(bad), bad);
}

TEST_CASE("msgpack bodies convert to JSON and back") {
  const json value =
      json::parse(R"({"s":"é","n":-3,"u":18446744073709551615,"f":0.5,"a":[null,true,{"k":[]}]})");
  const std::string packed = json_to_msgpack(value);
  auto back = msgpack_to_json(packed);
  REQUIRE(back);
  CHECK(*back == value);
  CHECK(body_to_json(packed) == value);
  CHECK(body_from_json(value) == packed);
}

TEST_CASE("a body without a faithful JSON form prints as base64") {
  auto pack = [](auto&& fn) {
    msgpack::sbuffer b;
    msgpack::packer<msgpack::sbuffer> pk(b);
    fn(pk);
    return std::string(b.data(), b.size());
  };
  const std::string not_json[] = {
      "",                          // empty
      "\xc1",                      // never used in msgpack
      std::string("\x01\x02", 2),  // two values: trailing bytes
      pack([](auto& pk) {
        pk.pack_bin(2);
        pk.pack_bin_body("ab", 2);
      }),  // bin
      pack([](auto& pk) {
        pk.pack_map(1);
        pk.pack(1);
        pk.pack(2);
      }),                                                        // integer key
      pack([](auto& pk) { pk.pack(std::nan("")); }),             // NaN
      pack([](auto& pk) { pk.pack(std::string("\xff\xfe")); }),  // invalid UTF-8
      pack([](auto& pk) {
        pk.pack_ext(4, -1);
        pk.pack_ext_body("\0\0\0\1", 4);
      }),  // timestamp ext
      pack([](auto& pk) {
        pk.pack_map(2);
        pk.pack("k");
        pk.pack(1);
        pk.pack("k");
        pk.pack(2);
      }),  // duplicate key
  };
  for (const auto& body : not_json) {
    CAPTURE(base64_encode(body));
    CHECK(!msgpack_to_json(body));
    const json j = body_to_json(body);
    CHECK(j == json{{"base64", base64_encode(body)}});
    CHECK(body_from_json(j) == body);
  }
}

TEST_CASE("envelopes round-trip through JSON") {
  auto env = zmqkit::make_envelope("order.created", std::map<std::string, int>{{"qty", 2}});
  env.priority = 9;
  env.ttl = 1500ms;
  env.correlation_id = zmqkit::message_id::generate();
  env.headers["zmk.pub"] = "p";
  const json j = envelope_to_json(env);
  CHECK(j["id"] == env.id.to_string());
  CHECK(envelope_from_json(j) == env);
  CHECK(envelope_from_json(json::parse(dump_line(j))) == env);
}

TEST_CASE("envelope JSON is checked field by field") {
  auto field_of = [](const char* text) {
    try {
      envelope_from_json(json::parse(text));
    } catch (const zmqkit::error& e) {
      CHECK(e.code() == zmqkit::errc::bad_config);
      return e.field();
    }
    return std::string("(accepted)");
  };
  CHECK(field_of(R"({"priority":1})") == "type");
  CHECK(field_of(R"({"type":""})") == "type");
  CHECK(field_of(R"({"type":"a","priority":10})") == "priority");
  CHECK(field_of(R"({"type":"a","ttl_ms":-1})") == "ttl_ms");
  CHECK(field_of(R"({"type":"a","id":"nope"})") == "id");
  CHECK(field_of(R"({"type":"a","timestamp":"yesterday"})") == "timestamp");
  CHECK(field_of(R"({"type":"a","headers":{"k":1}})") == "headers");
  CHECK(field_of(R"({"type":"a","body":{"base64":"!!"}})") == "body");
  CHECK(field_of(R"({"type":"a","tpye":"b"})") == "tpye");
  CHECK(field_of(R"({"type":"a","correlation_id":null,"body":null})") == "(accepted)");
}

TEST_CASE("invalid JSON text names the input and the position") {
  try {
    parse_json("{\"a\":", "--json");
    FAIL("accepted");
  } catch (const zmqkit::error& e) {
    CHECK(std::string(e.what()).starts_with("invalid JSON in --json: parse error at line 1, column 6"));
  }
}
