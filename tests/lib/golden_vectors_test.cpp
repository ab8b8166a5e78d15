// Cross-language golden vectors (tests/lib/golden/):
//   python_vectors.json — written by golden.py with Debian's python3-msgpack; decoded here.
//   cpp_vectors.json    — written by this file's encoder; decoded by golden.py (ctest
//                         golden_vectors_python) and re-encoded here byte for byte.
// Set ZMQKIT_UPDATE_GOLDEN=1 to rewrite cpp_vectors.json after a deliberate change.
#include <zmqkit/envelope.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>

using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::string golden_path(const std::string& name) {
  return std::string(std::getenv("ZMQKIT_SOURCE_DIR")) + "/tests/lib/golden/" + name;
}

std::string to_hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 0xf];
  }
  return out;
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

json fields_of(const zmqkit::envelope& env) {
  return {{"type", env.type},
          {"priority", env.priority},
          {"timestamp_ns", env.timestamp.time_since_epoch().count()},
          {"ttl_ms", env.ttl.count()},
          {"id", to_hex(env.id.as_bytes())},
          {"correlation_id", env.correlation_id ? to_hex(env.correlation_id->as_bytes()) : ""},
          {"headers", json(std::map<std::string, std::string>(env.headers.begin(), env.headers.end()))},
          {"body_hex", to_hex(env.body)}};
}

zmqkit::envelope envelope_of(const json& f) {
  zmqkit::envelope env;
  env.type = f["type"];
  env.priority = f["priority"];
  env.timestamp = zmqkit::wall_time(std::chrono::nanoseconds(f["timestamp_ns"].get<std::int64_t>()));
  env.ttl = std::chrono::milliseconds(f["ttl_ms"].get<std::int64_t>());
  env.id = *zmqkit::message_id::from_bytes(from_hex(f["id"]));
  if (!f["correlation_id"].get<std::string>().empty())
    env.correlation_id = zmqkit::message_id::from_bytes(from_hex(f["correlation_id"]));
  for (auto& [k, v] : f["headers"].items()) env.headers[k] = v;
  env.body = from_hex(f["body_hex"]);
  return env;
}

struct order {
  std::string sku;
  int qty;
  MSGPACK_DEFINE_MAP(sku, qty);
};

std::vector<std::pair<std::string, zmqkit::envelope>> cpp_vectors() {
  const auto id = [](const char* uuid) { return *zmqkit::message_id::parse(uuid); };
  std::vector<std::pair<std::string, zmqkit::envelope>> out;

  zmqkit::envelope minimal;
  minimal.type = "a";
  minimal.timestamp = zmqkit::wall_time(1'700'000'000s);
  minimal.id = id("0190f3a4-7c1e-7a2b-9c3d-5e6f7a8b9c0d");
  out.emplace_back("minimal: type 'a', default priority, 32-bit timestamp, nothing else", minimal);

  zmqkit::envelope full;
  full.type = "order.created";
  full.priority = 9;
  full.timestamp = zmqkit::wall_time(1'732'000'000'123'456'789ns);
  full.ttl = 5000ms;
  full.id = id("01934567-89ab-7def-8123-456789abcdef");
  full.correlation_id = id("01934567-89ab-7def-8123-456789abcd00");
  full.headers = {{"tenant", "acme"}, {"zmk.attempt", "2"}};
  full.set_body(order{"book", 2});
  out.emplace_back("full: every field set, body is msgpack map {sku: book, qty: 2}", full);

  zmqkit::envelope error = zmqkit::make_error_reply(full.id, zmqkit::reply_error::dead_letter,
                                                    "requeued 3 times");
  error.timestamp = zmqkit::wall_time(1'732'000'001'000'000'001ns);
  error.id = id("01934567-890a-7000-8000-00000000000a");
  out.emplace_back("error-reply: zmk.error=dead-letter with reason, empty body", error);

  zmqkit::envelope wide;
  wide.type = "cours\xc3\xa9.r\xc3\xa9view";
  wide.priority = 0;
  wide.timestamp = zmqkit::wall_time(-1'500'000'007ns);
  wide.ttl = 4'294'967'296ms;
  wide.id = id("ffffffff-ffff-7fff-bfff-ffffffffffff");
  wide.body.assign(300, '\x5a');
  out.emplace_back("wide: 96-bit timestamp (before 1970), 64-bit ttl, 300-byte body, UTF-8 type", wide);
  return out;
}

json load(const std::string& name) {
  std::ifstream in(golden_path(name));
  REQUIRE(in.good());
  return json::parse(in);
}

}  // namespace

TEST_CASE("the C++ encoder reproduces its checked-in golden vectors") {
  json vectors = json::array();
  for (const auto& [description, env] : cpp_vectors()) {
    vectors.push_back({{"name", description.substr(0, description.find(':'))},
                       {"description", description},
                       {"producer", "zmqkit C++ encoder"},
                       {"hex", to_hex(zmqkit::as_string_view(zmqkit::encode(env)))},
                       {"fields", fields_of(env)}});
  }
  if (std::getenv("ZMQKIT_UPDATE_GOLDEN")) {
    std::ofstream(golden_path("cpp_vectors.json")) << vectors.dump(2) << '\n';
  }
  const json stored = load("cpp_vectors.json");
  REQUIRE(stored.size() == vectors.size());
  for (std::size_t i = 0; i < vectors.size(); ++i) {
    CAPTURE(stored[i]["name"]);
    CHECK(stored[i]["hex"] == vectors[i]["hex"]);
    CHECK(zmqkit::decode(from_hex(stored[i]["hex"])) == envelope_of(stored[i]["fields"]));
  }
}

TEST_CASE("envelopes written by python3-msgpack decode to the fields they claim") {
  const json vectors = load("python_vectors.json");
  REQUIRE(vectors.size() >= 5);
  for (const auto& v : vectors) {
    CAPTURE(v["name"]);
    const std::string bytes = from_hex(v["hex"]);
    const zmqkit::envelope env = zmqkit::decode(bytes);
    CHECK(fields_of(env) == v["fields"]);
    CHECK(env == envelope_of(v["fields"]));
    CHECK(zmqkit::decode_view(bytes).to_envelope() == env);
  }
}
