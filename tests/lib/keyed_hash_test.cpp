#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <unistd.h>

#include <zmqkit/internal/keyed_hash.hpp>

using zmqkit::internal::keyed_hash_bytes;
using zmqkit::internal::keyed_map;

namespace {
const unsigned char reference_key[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

// The hash of "zmqkit" under this process's key, as printed by a fresh copy of this binary.
std::string hash_in_another_process() {
  char self[4096] = {};
  REQUIRE(::readlink("/proc/self/exe", self, sizeof self - 1) > 0);  // popen's shell is not us
  std::FILE* p = ::popen(("ZMQKIT_PRINT_KEYED_HASH=1 '" + std::string(self) + "'").c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[64] = {};
  const bool got = std::fgets(buf, sizeof buf, p) != nullptr;
  ::pclose(p);
  REQUIRE(got);
  return buf;
}

// Runs before doctest when the test re-executes itself as the "other process".
const bool printed = [] {
  if (std::getenv("ZMQKIT_PRINT_KEYED_HASH")) {
    std::printf("%llu", static_cast<unsigned long long>(keyed_hash_bytes("zmqkit")));
    std::exit(0);
  }
  return true;
}();
}  // namespace

TEST_CASE("the keyed hash is SipHash-2-4 (reference vectors from the SipHash paper)") {
  CHECK(zmqkit::internal::siphash24("", reference_key) == 0x726fdb47dd0e0e31ULL);
  std::string fifteen;
  for (char c = 0; c < 15; ++c) fifteen.push_back(c);
  CHECK(zmqkit::internal::siphash24(fifteen, reference_key) == 0xa129ca6149be45e5ULL);
}

TEST_CASE("each process hashes under its own random key, so collisions cannot be precomputed") {
  CHECK(printed);
  const auto here = std::to_string(keyed_hash_bytes("zmqkit"));
  CHECK(keyed_hash_bytes("zmqkit") == keyed_hash_bytes(std::string("zmqkit")));  // stable within a process
  CHECK(hash_in_another_process() != here);
  CHECK(keyed_hash_bytes("zmqkit") != zmqkit::internal::siphash24("zmqkit", reference_key));
}

TEST_CASE("keyed_map finds string keys by string_view and ids by value") {
  keyed_map<std::string, int> by_type;
  by_type["orders.create"] = 1;
  CHECK(by_type.find(std::string_view("orders.create")) != by_type.end());
  keyed_map<zmqkit::message_id, int> by_id;
  const auto id = zmqkit::message_id::generate();
  by_id[id] = 7;
  CHECK(by_id.at(id) == 7);
}
