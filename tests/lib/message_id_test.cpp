#include <zmqkit/message_id.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <set>
#include <thread>
#include <vector>

TEST_CASE("ids have the UUIDv7 layout and the current time") {
  const auto before = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  const auto id = zmqkit::message_id::generate();
  std::uint64_t ms = 0;
  for (int i = 0; i < 6; ++i) ms = (ms << 8) | id.bytes[static_cast<std::size_t>(i)];
  CHECK((id.bytes[6] >> 4) == 7);       // version
  CHECK((id.bytes[8] >> 6) == 0b10);    // variant
  CHECK(static_cast<std::int64_t>(ms) >= before);
  CHECK(static_cast<std::int64_t>(ms) <= before + 10'000);
}

TEST_CASE("ids from one thread strictly increase, even many per millisecond") {
  std::vector<zmqkit::message_id> ids;
  for (int i = 0; i < 100'000; ++i) ids.push_back(zmqkit::message_id::generate());
  for (std::size_t i = 1; i < ids.size(); ++i) REQUIRE(ids[i - 1] < ids[i]);
}

TEST_CASE("ids from several threads are unique") {
  std::vector<std::vector<zmqkit::message_id>> per_thread(4);
  std::vector<std::thread> threads;
  for (auto& out : per_thread)
    threads.emplace_back([&out] {
      for (int i = 0; i < 20'000; ++i) out.push_back(zmqkit::message_id::generate());
    });
  for (auto& t : threads) t.join();
  std::set<zmqkit::message_id> all;
  for (auto& v : per_thread) all.insert(v.begin(), v.end());
  CHECK(all.size() == 80'000);
}

TEST_CASE("text form round-trips and rejects malformed text") {
  const auto id = zmqkit::message_id::generate();
  const std::string text = id.to_string();
  CHECK(text.size() == 36);
  CHECK(text[14] == '7');
  CHECK(zmqkit::message_id::parse(text) == id);
  CHECK_FALSE(zmqkit::message_id::parse("not-a-uuid"));
  CHECK_FALSE(zmqkit::message_id::parse("0190f3a4x7c1e-7a2b-9c3d-5e6f7a8b9c0d"));
  CHECK_FALSE(zmqkit::message_id::from_bytes("short"));
}
