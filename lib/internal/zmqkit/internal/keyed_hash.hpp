// zmqkit/internal/keyed_hash.hpp — hash tables for keys that come from the network.
//
// Ids, types and identities are chosen by peers, so a peer that knew our hash function
// could send keys that all land in one bucket and make every lookup linear (hash flooding).
// Every such table uses keyed_map / keyed_set: Abseil's flat hash table with SipHash-2-4
// (libsodium's crypto_shorthash) under a key drawn at random once per process.
// Internal to the library: patterns include it, public headers never do.
#pragma once

#include <absl/container/flat_hash_map.h>
#include <absl/container/flat_hash_set.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "zmqkit/message_id.hpp"

namespace zmqkit::internal {

// SipHash-2-4 of `bytes` under this process's random key.
std::uint64_t keyed_hash_bytes(std::string_view bytes) noexcept;
// SipHash-2-4 under an explicit 16-byte key (for tests against the reference vectors).
std::uint64_t siphash24(std::string_view bytes, const unsigned char (&key)[16]) noexcept;

// A message id with its keyed hash, computed once. A request's id is looked up
// in several tables (dedup, reply cache) and each lookup would hash it again;
// SipHash is the larger part of such a lookup. Converts implicitly from an id.
struct hashed_id {
  message_id id;
  std::uint64_t hash;
  hashed_id(const message_id& i) noexcept : id(i), hash(zmqkit::keyed_hash(i)) {}  // NOLINT: implicit by design
  bool operator==(const hashed_id& other) const noexcept { return id == other.id; }
};

struct keyed_hash {
  using is_transparent = void;  // lookups by string_view need no std::string
  std::size_t operator()(const hashed_id& h) const noexcept { return h.hash; }
  std::size_t operator()(std::string_view s) const noexcept { return keyed_hash_bytes(s); }
  std::size_t operator()(const std::string& s) const noexcept { return keyed_hash_bytes(s); }
  std::size_t operator()(const char* s) const noexcept { return keyed_hash_bytes(s); }
  std::size_t operator()(const message_id& id) const noexcept { return zmqkit::keyed_hash(id); }
};

template <class Key, class Value>
using keyed_map = absl::flat_hash_map<Key, Value, keyed_hash, std::equal_to<>>;
template <class Key>
using keyed_set = absl::flat_hash_set<Key, keyed_hash, std::equal_to<>>;

}  // namespace zmqkit::internal
