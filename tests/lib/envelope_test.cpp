#include <doctest/doctest.h>

#include <functional>
#include <limits>
#include <zmqkit/envelope.hpp>

using namespace std::chrono_literals;
using zmqkit::envelope;
using zmqkit::errc;

namespace {

struct order {
  std::string sku;
  int quantity = 0;
  double price = 0;
  MSGPACK_DEFINE_MAP(sku, quantity, price);
  friend bool operator==(const order&, const order&) = default;
};

std::string frame_bytes(const zmq::message_t& m) { return std::string(zmqkit::as_string_view(m)); }

// Packs a nine-field envelope by hand; `field` replaces element i's packing when it returns true.
using packer_t = msgpack::packer<msgpack::sbuffer>;
std::string pack_envelope(const std::function<bool(int, packer_t&)>& field = {}, int elements = 9) {
  msgpack::sbuffer buf;
  packer_t pk(buf);
  pk.pack_array(static_cast<uint32_t>(elements));
  const std::string id(16, '\x01');
  for (int i = 0; i < elements; ++i) {
    if (field && field(i, pk)) continue;
    switch (i) {
      case 0: pk.pack(1); break;
      case 1: pk.pack(std::string("order.created")); break;
      case 2: pk.pack(4); break;
      case 3: pk.pack(msgpack::type::ext(-1, "\x00\x00\x00\x01", 4)); break;
      case 4: pk.pack(0); break;
      case 5:
        pk.pack_bin(16);
        pk.pack_bin_body(id.data(), 16);
        break;
      case 6: pk.pack_bin(0); break;
      case 7: pk.pack_map(0); break;
      case 8: pk.pack_bin(0); break;
      default: pk.pack(std::string("future field")); break;
    }
  }
  return {buf.data(), buf.size()};
}

// Returns the field named by the error that decoding `bytes` throws (both decoders must agree).
std::string rejected_field(const std::string& bytes, errc expected = errc::bad_envelope) {
  std::string field;
  try {
    (void)zmqkit::decode_view(bytes);
    FAIL("decode_view accepted an invalid envelope");
  } catch (const zmqkit::error& e) {
    CHECK(e.code() == expected);
    field = e.field();
  }
  CHECK_THROWS_AS((void)zmqkit::decode(bytes), zmqkit::error);
  return field;
}

}  // namespace

TEST_CASE("an envelope round-trips every field") {
  envelope env = zmqkit::make_envelope("order.created", order{"book-42", 3, 19.5});
  env.priority = 9;
  env.ttl = 2500ms;
  env.timestamp = zmqkit::wall_time(1'732'000'000'123'456'789ns);
  env.correlation_id = zmqkit::message_id::generate();
  env.headers = {{"tenant", "acme"}, {"zmk.attempt", "2"}};

  const zmq::message_t frame = zmqkit::encode(env);
  CHECK(frame.size() == zmqkit::encoded_size(env));

  const envelope back = zmqkit::decode(frame);
  CHECK(back == env);
  CHECK(back.body_as<order>() == order{"book-42", 3, 19.5});
  CHECK(back.header("tenant") == "acme");
  CHECK_FALSE(back.header("missing"));

  SUBCASE("the view decoder sees the same fields without copying") {
    const zmqkit::envelope_view view = zmqkit::decode_view(frame);
    CHECK(view.type == "order.created");
    CHECK(view.priority == 9);
    CHECK(view.ttl == 2500ms);
    CHECK(view.timestamp == env.timestamp);
    CHECK(view.id == env.id);
    CHECK(view.correlation_id == env.correlation_id);
    CHECK(view.header("zmk.attempt") == "2");
    CHECK(view.header_count == 2);
    CHECK(view.body.data() >= static_cast<const char*>(frame.data()));
    CHECK(view.body.data() < static_cast<const char*>(frame.data()) + frame.size());
    CHECK(view.to_envelope() == env);
  }
}

TEST_CASE("defaults: priority 4, no ttl, fresh id, current timestamp, no correlation") {
  zmqkit::manual_clock clock;
  const envelope env = zmqkit::make_envelope("course.subscribed", clock);
  CHECK(env.priority == 4);
  CHECK(env.ttl == 0ms);
  CHECK(env.timestamp == clock.wall_now());
  CHECK_FALSE(env.id.is_nil());
  CHECK_FALSE(env.correlation_id);
  CHECK(zmqkit::decode(zmqkit::encode(env)) == env);
}

TEST_CASE("every timestamp form decodes, and the encoder picks the smallest") {
  for (auto t : {zmqkit::wall_time(0ns), zmqkit::wall_time(4'000'000'000s),  // 32-bit
                 zmqkit::wall_time(1'700'000'000'500'000'000ns),             // 64-bit
                 zmqkit::wall_time(-1'500'000'000ns)}) {                     // before 1970: 96-bit
    envelope env = zmqkit::make_envelope("t");
    env.timestamp = t;
    CHECK(zmqkit::decode(zmqkit::encode(env)).timestamp == t);
  }
}

TEST_CASE("large fields use the wider msgpack forms and still round-trip") {
  envelope env = zmqkit::make_envelope(std::string(255, 'x'));
  env.body.assign(70'000, '\x7f');
  for (int i = 0; i < 20; ++i) env.headers["h" + std::to_string(i)] = std::string(300, 'v');
  env.ttl = std::chrono::milliseconds(5'000'000'000LL);
  CHECK(zmqkit::decode(zmqkit::encode(env)) == env);
}

TEST_CASE("forward compatibility: elements after the ninth are ignored") {
  const std::string bytes = pack_envelope(
      [](int i, packer_t& pk) {
        if (i != 10) return false;
        pk.pack_map(1);  // a nested future field
        pk.pack(std::string("k"));
        pk.pack_array(2);
        pk.pack(1);
        pk.pack(2.5);
        return true;
      },
      11);
  const envelope env = zmqkit::decode(bytes);
  CHECK(env.type == "order.created");
}

TEST_CASE("every envelope rule is enforced, naming the field") {
  using pk_fn = std::function<bool(int, packer_t&)>;
  auto replace = [](int index, std::function<void(packer_t&)> f) -> pk_fn {
    return [=](int i, packer_t& pk) {
      if (i != index) return false;
      f(pk);
      return true;
    };
  };

  SUBCASE("not an array") {
    msgpack::sbuffer buf;
    msgpack::pack(buf, std::map<std::string, int>{{"a", 1}});
    CHECK(rejected_field({buf.data(), buf.size()}) == "envelope");
  }
  SUBCASE("empty frame") { CHECK(rejected_field("") == "envelope"); }
  SUBCASE("fewer than nine elements") { CHECK(rejected_field(pack_envelope({}, 8)) == "envelope"); }
  SUBCASE("version is not 1") {
    CHECK(rejected_field(pack_envelope(replace(0, [](packer_t& pk) { pk.pack(2); }))) == "version");
  }
  SUBCASE("version is a string") {
    CHECK(rejected_field(pack_envelope(replace(0, [](packer_t& pk) { pk.pack(std::string("1")); }))) ==
          "version");
  }
  SUBCASE("type is not a string") {
    CHECK(rejected_field(pack_envelope(replace(1, [](packer_t& pk) { pk.pack(7); }))) == "type");
  }
  SUBCASE("type is empty") {
    CHECK(rejected_field(pack_envelope(replace(1, [](packer_t& pk) { pk.pack(std::string()); }))) == "type");
  }
  SUBCASE("type is over 255 bytes") {
    CHECK(rejected_field(pack_envelope(replace(1, [](packer_t& pk) { pk.pack(std::string(256, 'a')); }))) ==
          "type");
  }
  SUBCASE("type is not UTF-8") {
    CHECK(rejected_field(pack_envelope(replace(1, [](packer_t& pk) { pk.pack(std::string("a\xff")); }))) ==
          "type");
  }
  SUBCASE("priority over 9") {
    CHECK(rejected_field(pack_envelope(replace(2, [](packer_t& pk) { pk.pack(10); }))) == "priority");
  }
  SUBCASE("priority negative") {
    CHECK(rejected_field(pack_envelope(replace(2, [](packer_t& pk) { pk.pack(-1); }))) == "priority");
  }
  SUBCASE("timestamp is an integer") {
    CHECK(rejected_field(pack_envelope(replace(3, [](packer_t& pk) { pk.pack(1700000000); }))) ==
          "timestamp");
  }
  SUBCASE("timestamp is another extension type") {
    CHECK(rejected_field(pack_envelope(replace(
              3, [](packer_t& pk) { pk.pack(msgpack::type::ext(5, "\0\0\0\1", 4)); }))) == "timestamp");
  }
  SUBCASE("timestamp nanoseconds out of range") {
    // 96-bit form with nanoseconds = 1e9.
    CHECK(rejected_field(pack_envelope(replace(3, [](packer_t& pk) {
            pk.pack(msgpack::type::ext(-1, "\x3b\x9a\xca\x00\0\0\0\0\0\0\0\1", 12));
          }))) == "timestamp");
  }
  SUBCASE("ttl negative") {
    CHECK(rejected_field(pack_envelope(replace(4, [](packer_t& pk) { pk.pack(-5); }))) == "ttl_ms");
  }
  SUBCASE("ttl is a float") {
    CHECK(rejected_field(pack_envelope(replace(4, [](packer_t& pk) { pk.pack(1.5); }))) == "ttl_ms");
  }
  SUBCASE("id not 16 bytes") {
    CHECK(rejected_field(pack_envelope(replace(5, [](packer_t& pk) {
            pk.pack_bin(15);
            pk.pack_bin_body("123456789012345", 15);
          }))) == "id");
  }
  SUBCASE("id is a string, not bin") {
    CHECK(rejected_field(pack_envelope(replace(5, [](packer_t& pk) { pk.pack(std::string(16, 'a')); }))) ==
          "id");
  }
  SUBCASE("correlation_id neither empty nor 16 bytes") {
    CHECK(rejected_field(pack_envelope(replace(6, [](packer_t& pk) {
            pk.pack_bin(4);
            pk.pack_bin_body("abcd", 4);
          }))) == "correlation_id");
  }
  SUBCASE("headers not a map") {
    CHECK(rejected_field(pack_envelope(replace(7, [](packer_t& pk) { pk.pack_array(0); }))) == "headers");
  }
  SUBCASE("header value not a string") {
    CHECK(rejected_field(pack_envelope(replace(7, [](packer_t& pk) {
            pk.pack_map(1);
            pk.pack(std::string("k"));
            pk.pack(1);
          }))) == "headers");
  }
  SUBCASE("a header key given twice") {
    CHECK(rejected_field(pack_envelope(replace(7, [](packer_t& pk) {
            pk.pack_map(3);
            for (const char* k : {"tenant", "zmk.attempt", "tenant"}) {
              pk.pack(std::string(k));
              pk.pack(std::string("v"));
            }
          }))) == "headers");
  }
  SUBCASE("a header key given twice past the inline limit") {
    std::string bytes = pack_envelope(replace(7, [](packer_t& pk) {
      pk.pack_map(100);
      for (int i = 0; i < 100; ++i) {
        pk.pack(std::to_string(i == 99 ? 0 : i));
        pk.pack(std::string("v"));
      }
    }));
    CHECK_THROWS_AS((void)zmqkit::decode_view(bytes, {.max_headers = 128}), zmqkit::error);
    // 100 distinct keys (including an empty one) are fine.
    bytes = pack_envelope(replace(7, [](packer_t& pk) {
      pk.pack_map(100);
      for (int i = 0; i < 100; ++i) {
        pk.pack(i == 0 ? std::string() : std::to_string(i));
        pk.pack(std::string("v"));
      }
    }));
    CHECK(zmqkit::decode(bytes, {.max_headers = 128}).headers.size() == 100);
  }
  SUBCASE("too many headers") {
    CHECK(rejected_field(pack_envelope(replace(7, [](packer_t& pk) {
            pk.pack_map(65);
            for (int i = 0; i < 65; ++i) {
              pk.pack(std::to_string(i));
              pk.pack(std::string("v"));
            }
          }))) == "headers");
  }
  SUBCASE("body is a string, not bin") {
    CHECK(rejected_field(pack_envelope(replace(8, [](packer_t& pk) { pk.pack(std::string("x")); }))) ==
          "body");
  }
  SUBCASE("trailing bytes after the array") { CHECK(rejected_field(pack_envelope() + '\x00') == "envelope"); }
  SUBCASE("truncated frame") {
    const std::string full = pack_envelope();
    for (std::size_t n = 1; n < full.size(); ++n) {
      CAPTURE(n);
      CHECK_THROWS_AS((void)zmqkit::decode_view(full.substr(0, n)), zmqkit::error);
    }
  }
  SUBCASE("array count that lies about what follows") {
    std::string bytes = "\xdd\xff\xff\xff\xff";  // 4 G elements, 5 bytes
    CHECK(rejected_field(bytes + pack_envelope().substr(1)) == "envelope");
  }
  SUBCASE("frame over the configured maximum") {
    envelope env = zmqkit::make_envelope("big");
    env.body.assign(2000, 'b');
    const zmq::message_t frame = zmqkit::encode(env);
    try {
      (void)zmqkit::decode_view(frame, {.max_frame_bytes = 1000});
      FAIL("oversize frame accepted");
    } catch (const zmqkit::error& e) {
      CHECK(e.code() == errc::frame_too_large);
      CHECK(e.field() == "frame");
    }
  }
}

TEST_CASE("encode refuses an envelope that breaks a rule") {
  envelope env = zmqkit::make_envelope("ok");
  SUBCASE("empty type") {
    env.type.clear();
    CHECK_THROWS_AS(zmqkit::encode(env), zmqkit::error);
  }
  SUBCASE("priority over 9") {
    env.priority = 10;
    CHECK_THROWS_AS(zmqkit::encode(env), zmqkit::error);
  }
}

TEST_CASE("typed bodies") {
  SUBCASE("any msgpack-adaptable value round-trips") {
    const auto env = zmqkit::decode(zmqkit::encode(zmqkit::make_envelope("v", std::vector<int>{1, 2, 3})));
    CHECK(env.body_as<std::vector<int>>() == std::vector<int>{1, 2, 3});
  }
  SUBCASE("a body of the wrong shape is a bad_body error") {
    const auto env = zmqkit::make_envelope("v", std::string("not an order"));
    try {
      (void)env.body_as<order>();
      FAIL("converted a string to an order");
    } catch (const zmqkit::error& e) {
      CHECK(e.code() == errc::bad_body);
      CHECK(e.field() == "body");
    }
  }
  SUBCASE("a body that is not msgpack is a bad_body error") {
    envelope env = zmqkit::make_envelope("v");
    env.body = "\xc1";
    CHECK_THROWS_AS((void)env.body_as<int>(), zmqkit::error);
  }
  SUBCASE("a body claiming a huge array is refused without allocating it") {
    envelope env = zmqkit::make_envelope("v");
    env.body = "\xdd\xff\xff\xff\xff";
    CHECK_THROWS_AS((void)env.body_as<std::vector<int>>(), zmqkit::error);
  }
  SUBCASE("trailing bytes after the body value are refused") {
    envelope env = zmqkit::make_envelope("v", 5);
    env.body += '\x01';
    CHECK_THROWS_AS((void)env.body_as<int>(), zmqkit::error);
  }
}

namespace {
struct address {
  std::string city;
  MSGPACK_DEFINE_MAP(city);
};
struct registration {
  std::string name;
  std::string email;
  std::optional<std::string> referrer;  // may be absent
  address home;
  MSGPACK_DEFINE_MAP(name, email, referrer, home);
};
// Packs a map body from (key, value) pairs of one value type.
template <class V>
std::string map_body(const std::vector<std::pair<std::string, V>>& fields) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(static_cast<std::uint32_t>(fields.size()));
  for (const auto& [k, v] : fields) {
    pk.pack(k);
    pk.pack(v);
  }
  return std::string(buf.data(), buf.size());
}
std::string field_error(const envelope& env) {
  try {
    (void)env.body_as<registration>();
  } catch (const zmqkit::error& e) {
    CHECK(e.code() == errc::bad_body);
    return e.field();
  }
  return "(converted)";
}
}  // namespace

TEST_CASE("body_as is strict: a missing or mistyped field is a bad_body error naming it") {
  envelope env = zmqkit::make_envelope("register");
  SUBCASE("{\"mail\": \"x\"} is not a registration") {
    env.body = map_body<std::string>({{"mail", "x"}});
    CHECK(field_error(env) == "body.name");
  }
  SUBCASE("missing email") {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_map(2);
    pk.pack(std::string("name")), pk.pack(std::string("ann"));
    pk.pack(std::string("home")), pk.pack(address{"Oslo"});
    env.body.assign(buf.data(), buf.size());
    CHECK(field_error(env) == "body.email");
  }
  SUBCASE("missing nested field") {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_map(3);
    pk.pack(std::string("name")), pk.pack(std::string("ann"));
    pk.pack(std::string("email")), pk.pack(std::string("a@x"));
    pk.pack(std::string("home")), pk.pack_map(0);
    env.body.assign(buf.data(), buf.size());
    CHECK(field_error(env) == "body.home.city");
  }
  SUBCASE("mistyped email") {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_map(3);
    pk.pack(std::string("name")), pk.pack(std::string("ann"));
    pk.pack(std::string("email")), pk.pack(42);
    pk.pack(std::string("home")), pk.pack(address{"Oslo"});
    env.body.assign(buf.data(), buf.size());
    CHECK(field_error(env) == "body.email");
  }
  SUBCASE("an optional field may be absent, unknown fields are ignored") {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_map(4);
    pk.pack(std::string("name")), pk.pack(std::string("ann"));
    pk.pack(std::string("email")), pk.pack(std::string("a@x"));
    pk.pack(std::string("home")), pk.pack(address{"Oslo"});
    pk.pack(std::string("added.later")), pk.pack(1);
    env.body.assign(buf.data(), buf.size());
    const auto r = env.body_as<registration>();
    CHECK(r.email == "a@x");
    CHECK(r.home.city == "Oslo");
    CHECK_FALSE(r.referrer.has_value());
  }
  SUBCASE("body_as_lenient fills what is missing with defaults") {
    env.body = map_body<std::string>({{"mail", "x"}});
    const auto r = env.body_as_lenient<registration>();
    CHECK(r.email.empty());
  }
}

TEST_CASE("replies") {
  zmqkit::manual_clock clock;
  envelope request = zmqkit::make_envelope("payment.authorise", order{"x", 1, 2}, clock);
  request.priority = 7;

  SUBCASE("a reply carries the request's id as correlation id") {
    const envelope reply = zmqkit::make_reply(request, "payment.authorised", std::string("ok"), clock);
    CHECK(reply.correlation_id == request.id);
    CHECK(reply.id != request.id);
    CHECK(reply.priority == 7);
    CHECK_FALSE(reply.is_error());
  }
  SUBCASE("an error reply carries zmk.error and zmk.reason and an empty body") {
    const envelope reply = zmqkit::make_error_reply(request.id, zmqkit::reply_error::expired, "ttl passed");
    const envelope back = zmqkit::decode(zmqkit::encode(reply));
    CHECK(back.type == "zmk.error");
    CHECK(back.is_error());
    CHECK(back.error_code() == "expired");
    CHECK(back.header("zmk.reason") == "ttl passed");
    CHECK(back.correlation_id == request.id);
    CHECK(back.body.empty());
  }
  SUBCASE("an error reply to an unreadable request has no correlation id") {
    const envelope reply = zmqkit::make_error_reply(std::nullopt, "bad-request", "priority: greater than 9");
    CHECK_FALSE(zmqkit::decode(zmqkit::encode(reply)).correlation_id);
  }
  SUBCASE("reply error codes have their wire names") {
    using zmqkit::reply_error;
    for (auto code : {reply_error::expired, reply_error::dead_letter, reply_error::no_service,
                      reply_error::overloaded, reply_error::bad_request, reply_error::unavailable,
                      reply_error::internal})
      CHECK(zmqkit::parse_reply_error(zmqkit::to_string(code)) == code);
    CHECK(zmqkit::to_string(reply_error::internal) == "internal");
    CHECK(zmqkit::to_string(reply_error::dead_letter) == "dead-letter");
    CHECK_FALSE(zmqkit::parse_reply_error("nope"));
  }
}

TEST_CASE("expiry follows timestamp + ttl") {
  zmqkit::manual_clock clock;
  envelope env = zmqkit::make_envelope("payment.authorise", clock);
  CHECK_FALSE(env.expired(clock.wall_now() + 1000h));  // ttl 0 never expires
  env.ttl = 100ms;
  CHECK_FALSE(env.expired(clock.wall_now() + 99ms));
  CHECK(env.expired(clock.wall_now() + 100ms));
  const auto frame = zmqkit::encode(env);
  CHECK(zmqkit::decode_view(frame).expired(clock.wall_now() + 100ms));
}

TEST_CASE("expiry of a timestamp before 1970 is timestamp + ttl, without overflow") {
  envelope env = zmqkit::make_envelope("a");
  env.timestamp = zmqkit::wall_time(std::chrono::seconds(-86400));  // 1969-12-31
  env.ttl = 1ms;
  REQUIRE(env.expires_at());
  CHECK(*env.expires_at() == env.timestamp + 1ms);
  CHECK(env.expired(zmqkit::wall_time{}));
  const auto frame = zmqkit::encode(env);
  CHECK(zmqkit::decode_view(frame).expired(zmqkit::wall_time{}));
  // The far past and absurd TTLs still saturate rather than wrap.
  env.timestamp = zmqkit::wall_time(std::chrono::seconds(-9'000'000'000LL));
  CHECK(*env.expires_at() == env.timestamp + 1ms);
  env.timestamp = zmqkit::wall_time(std::chrono::seconds(9'000'000'000LL));
  env.ttl = std::chrono::milliseconds(std::numeric_limits<std::int64_t>::max());
  CHECK(*env.expires_at() == zmqkit::wall_time::max());
}

TEST_CASE("a header key or value that is not valid UTF-8 is rejected as 'headers'") {
  for (const std::string bad : {std::string("\xff"), std::string("a\xc0\xafb"), std::string("\xed\xa0\x80")}) {
    for (const bool in_key : {true, false}) {
      envelope env = zmqkit::make_envelope("a");
      if (in_key)
        env.headers.emplace(bad, "v");
      else
        env.headers.emplace("k", bad);
      const auto frame = zmqkit::encode(env);
      try {
        (void)zmqkit::decode_view(frame);
        FAIL("accepted a non-UTF-8 header");
      } catch (const zmqkit::error& e) {
        CHECK(e.field() == "headers");
      }
      CHECK_THROWS(zmqkit::decode(frame));
    }
  }
  envelope env = zmqkit::make_envelope("a");
  env.headers.emplace("cl\xc3\xa9", "\xe2\x82\xac \xf0\x9f\x98\x80");  // valid: accepted
  CHECK(zmqkit::decode(zmqkit::encode(env)) == env);
}

TEST_CASE("request_id_of reads element 5 of a frame that does not decode") {
  envelope env = zmqkit::make_envelope("a");
  std::string frame = frame_bytes(zmqkit::encode(env));
  CHECK(zmqkit::request_id_of(frame) == env.id);
  frame += '\x00';  // trailing bytes: not an envelope, but the id is readable
  CHECK_THROWS(zmqkit::decode_view(frame));
  CHECK(zmqkit::request_id_of(frame) == env.id);
  CHECK_FALSE(zmqkit::request_id_of("\x93\x01\xa1x"));  // too short
  CHECK_FALSE(zmqkit::request_id_of("HELLO"));
  CHECK_FALSE(zmqkit::request_id_of(""));
}

TEST_CASE("correlation_id_of reads element 6 of an envelope-shaped frame, nothing after it") {
  envelope reply = zmqkit::make_envelope("a");
  CHECK_FALSE(zmqkit::correlation_id_of(frame_bytes(zmqkit::encode(reply))));  // none set
  reply.correlation_id = zmqkit::message_id::generate();
  std::string frame = frame_bytes(zmqkit::encode(reply));
  CHECK(zmqkit::correlation_id_of(frame) == reply.correlation_id);
  CHECK(zmqkit::correlation_id_of(frame.substr(0, frame.size() - 3)) == reply.correlation_id);  // body cut short
  frame[1] = '\x02';  // version 2: not ZMK/1
  CHECK_FALSE(zmqkit::correlation_id_of(frame));
  CHECK_FALSE(zmqkit::correlation_id_of("\x95hello"));
  CHECK_FALSE(zmqkit::correlation_id_of("HELLO"));
  CHECK_FALSE(zmqkit::correlation_id_of(""));
}

TEST_CASE("decode_if_envelope: a view for an envelope, nullopt for a plain body, an error for a broken envelope") {
  const envelope env = zmqkit::make_envelope("a");
  const std::string frame = frame_bytes(zmqkit::encode(env));
  const auto got = zmqkit::decode_if_envelope(frame);
  REQUIRE(got);
  CHECK(got->id == env.id);
  CHECK_FALSE(zmqkit::decode_if_envelope("HELLO"));
  CHECK_FALSE(zmqkit::decode_if_envelope("\x95hi"));  // starts like an array of 5: still plain
  CHECK_THROWS_AS(zmqkit::decode_if_envelope("\x93\x01\xa1x\x02"), zmqkit::error);  // a complete array
}

TEST_CASE("plain bodies are told apart from envelopes") {
  CHECK(zmqkit::looks_like_envelope(frame_bytes(zmqkit::encode(zmqkit::make_envelope("a")))));
  CHECK_FALSE(zmqkit::looks_like_envelope("HELLO"));
  CHECK_FALSE(zmqkit::looks_like_envelope(""));
  // Only a complete msgpack array, and nothing after it, is a candidate.
  CHECK_FALSE(zmqkit::looks_like_envelope("\x95hi"));             // 2 of 5 elements
  CHECK_FALSE(zmqkit::looks_like_envelope("\x95hello world"));    // an array, then more bytes
  CHECK_FALSE(zmqkit::looks_like_envelope("\xdc\xff\xffabc"));    // claims 65535 elements
  CHECK(zmqkit::looks_like_envelope("\x95hello"));                // the array [104, 101, 108, 108, 111]
  CHECK(zmqkit::looks_like_envelope("\x93\x01\xa1x\x04"));         // complete, though not an envelope
}

TEST_CASE("encode with stamped headers gives the bytes of inserting them") {
  const auto bytes = [](const zmq::message_t& m) { return std::string(zmqkit::as_string_view(m)); };
  const zmqkit::header_ref stamp[] = {{"b", "stamped-b"}, {"m", "stamped-m"}, {"zz", "stamped-zz"}};
  for (const zmqkit::header_map& headers :
       {zmqkit::header_map{}, zmqkit::header_map{{"a", "1"}}, zmqkit::header_map{{"b", "old"}, {"c", "3"}},
        zmqkit::header_map{{"a", "1"}, {"m", "old"}, {"n", "2"}, {"zz", "old"}, {"zzz", "4"}}}) {
    envelope env = zmqkit::make_envelope("stamp.test");
    env.body = "body";
    env.headers = headers;
    envelope inserted = env;
    for (const auto& h : stamp) inserted.headers.insert_or_assign(std::string(h.key), std::string(h.value));
    CHECK(bytes(zmqkit::encode(env, stamp)) == bytes(zmqkit::encode(inserted)));
    CHECK(zmqkit::decode(zmqkit::encode(env, stamp)) == inserted);
    CHECK(bytes(zmqkit::encode(env, {})) == bytes(zmqkit::encode(env)));
    CHECK(env.headers == headers);  // env itself is untouched
  }
}

TEST_CASE("type UTF-8 check: non-ASCII after a long ASCII run is still checked") {
  envelope env = zmqkit::make_envelope("abcdefgh.caf\xc3\xa9");  // valid: é after 12 ASCII bytes
  CHECK(zmqkit::decode(zmqkit::encode(env)).type == env.type);
  for (const char* bad :
       {"abcdefgh\xff", "abcdefghijklmnop\xc3", "abcdefgh\xed\xa0\x80", "abcdefg\xc0\xaf"}) {
    env.type = bad;
    CHECK_THROWS_AS(zmqkit::encode(env), zmqkit::error);
  }
}
