#include <zmqkit/internal/keyed_hash.hpp>

#include <sodium.h>

#include <bit>
#include <cstdlib>
#include <cstring>

namespace zmqkit::internal {
namespace {

struct process_key {
  unsigned char bytes[crypto_shorthash_KEYBYTES];
  process_key() noexcept {
    // sodium_init only fails when no entropy source can be opened; a predictable key
    // would silently reopen the flooding hole, so refuse to run instead.
    if (sodium_init() < 0) std::abort();
    crypto_shorthash_keygen(bytes);
  }
};

const process_key& key() noexcept {
  static const process_key k;  // thread-safe one-time init
  return k;
}

std::uint64_t to_u64(const unsigned char (&out)[crypto_shorthash_BYTES]) noexcept {
  std::uint64_t v;
  std::memcpy(&v, out, sizeof v);  // SipHash's output is little-endian
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}

}  // namespace

static_assert(crypto_shorthash_KEYBYTES == 16 && crypto_shorthash_BYTES == 8);

std::uint64_t siphash24(std::string_view bytes, const unsigned char (&k)[16]) noexcept {
  unsigned char out[crypto_shorthash_BYTES];
  crypto_shorthash_siphash24(out, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), k);
  return to_u64(out);
}

std::uint64_t keyed_hash_bytes(std::string_view bytes) noexcept { return siphash24(bytes, key().bytes); }

}  // namespace zmqkit::internal

namespace zmqkit {
std::size_t keyed_hash(const message_id& id) noexcept { return internal::keyed_hash_bytes(id.as_bytes()); }
}  // namespace zmqkit
