#include <zmqkit/internal/worker_protocol.hpp>

#include <msgpack.hpp>
#include <span>
#include <utility>
#include <zmqkit/envelope.hpp>

namespace zmqkit::internal::worker_protocol {
namespace {

constexpr std::size_t max_ready_keys = 16;  // unknown keys are ignored, within reason

// Reads a msgpack array of str (or bin) into `out`. Returns: false if it is not one.
bool read_prefixes(const msgpack::object& o, std::vector<std::string>& out) {
  if (o.type != msgpack::type::ARRAY) return false;
  for (const auto& p : std::span(o.via.array.ptr, o.via.array.size)) {
    if (p.type == msgpack::type::STR)
      out.emplace_back(p.via.str.ptr, p.via.str.size);
    else if (p.type == msgpack::type::BIN)
      out.emplace_back(p.via.bin.ptr, p.via.bin.size);
    else
      return false;
  }
  return true;
}

}  // namespace

std::string encode_ready(const announcement& a) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  if (a.capacity > 1) {
    pk.pack_map(a.prefixes.empty() ? 1 : 2);
    pk.pack(std::string_view("capacity"));
    pk.pack(static_cast<std::uint64_t>(a.capacity));
    if (!a.prefixes.empty()) {
      pk.pack(std::string_view("prefixes"));
      pk.pack(a.prefixes);
    }
  } else if (!a.prefixes.empty()) {
    pk.pack(a.prefixes);
  }
  return std::string(buf.data(), buf.size());
}

std::variant<announcement, std::string> parse_ready(std::string_view frame, std::size_t max_prefixes,
                                                    std::uint64_t max_worker_capacity) {
  announcement out;
  try {
    std::size_t offset = 0;
    // A prefix longer than a type can match nothing: refused while unpacking.
    const msgpack::unpack_limit limit(max_prefixes, max_ready_keys, max_type_bytes, max_type_bytes, 1, 3);
    msgpack::object_handle h = msgpack::unpack(frame.data(), frame.size(), offset, nullptr, nullptr, limit);
    if (offset != frame.size()) return std::string("READY frame has trailing bytes");
    const msgpack::object& o = h.get();
    if (o.type == msgpack::type::ARRAY) {
      if (!read_prefixes(o, out.prefixes)) return std::string("READY prefixes are not all strings");
      return out;
    }
    if (o.type != msgpack::type::MAP) return std::string("READY frame is neither a prefix array nor a map");
    bool seen_prefixes = false, seen_capacity = false;
    for (const auto& kv : std::span(o.via.map.ptr, o.via.map.size)) {
      if (kv.key.type != msgpack::type::STR) return std::string("READY map key is not a string");
      const std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
      if (key == "prefixes") {
        if (std::exchange(seen_prefixes, true)) return std::string("READY map repeats 'prefixes'");
        if (!read_prefixes(kv.val, out.prefixes)) return std::string("READY 'prefixes' is not an array of strings");
      } else if (key == "capacity") {
        if (std::exchange(seen_capacity, true)) return std::string("READY map repeats 'capacity'");
        if (kv.val.type != msgpack::type::POSITIVE_INTEGER || kv.val.via.u64 < 1 ||
            kv.val.via.u64 > max_worker_capacity)
          return "READY 'capacity' is not an integer in 1.." + std::to_string(max_worker_capacity);
        out.capacity = static_cast<std::size_t>(kv.val.via.u64);
      }
    }
    return out;
  } catch (const std::exception& e) {
    return std::string("READY frame is not msgpack: ") + e.what();
  }
}

}  // namespace zmqkit::internal::worker_protocol
