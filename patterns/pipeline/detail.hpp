// Internals shared by the pipeline roles: control-message bodies and header values.
#pragma once

#include <array>
#include <charconv>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/message_id.hpp>

#include <zmqkit/internal/keyed_hash.hpp>

namespace zmqkit::pipeline::detail {

// Returns: the non-negative decimal in `text`, or nullopt.
inline std::optional<std::int64_t> parse_count(std::optional<std::string_view> text) {
  if (!text || text->empty()) return std::nullopt;
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc{} || end != text->data() + text->size() || value < 0) return std::nullopt;
  return value;
}

// A list of task ids on the wire: a msgpack array of 16-byte bins.
inline std::string pack_ids(std::span<const message_id> ids) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(static_cast<std::uint32_t>(ids.size()));
  for (const auto& id : ids) {
    packer.pack_bin(16);
    packer.pack_bin_body(id.as_bytes().data(), 16);
  }
  return {buffer.data(), buffer.size()};
}

// Returns: the ids in `body`, or nullopt when it is not an array of 16-byte bins.
inline std::optional<std::vector<message_id>> unpack_ids(std::string_view body, std::size_t max_ids) {
  try {
    std::size_t offset = 0;
    const msgpack::unpack_limit limit(max_ids, 0, 0, 16, 0, 2);
    msgpack::object_handle handle =
        msgpack::unpack(body.data(), body.size(), offset, nullptr, nullptr, limit);
    if (offset != body.size()) return std::nullopt;
    const msgpack::object& obj = handle.get();
    if (obj.type != msgpack::type::ARRAY) return std::nullopt;
    std::vector<message_id> ids;
    ids.reserve(obj.via.array.size);
    for (std::uint32_t i = 0; i < obj.via.array.size; ++i) {
      const msgpack::object& item = obj.via.array.ptr[i];
      if (item.type != msgpack::type::BIN) return std::nullopt;
      auto id = message_id::from_bytes({item.via.bin.ptr, item.via.bin.size});
      if (!id) return std::nullopt;
      ids.push_back(*id);
    }
    return ids;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// Sends `frame`, preceded by `identity` when routing from a ROUTER, without blocking.
// Returns: false when the peer is unreachable or its queue is full.
inline bool send_frame(zmq::socket_t& socket, zmq::message_t& frame, const std::string* identity = nullptr) {
  try {
    if (identity &&
        !socket.send(zmq::buffer(*identity), zmq::send_flags::sndmore | zmq::send_flags::dontwait))
      return false;
    return socket.send(frame, zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t&) {
    return false;  // EHOSTUNREACH (router_mandatory) or a closing context
  }
}

inline bool send_control(zmq::socket_t& socket, const envelope& env, const std::string* identity = nullptr) {
  zmq::message_t frame = encode(env);
  return send_frame(socket, frame, identity);
}

// Task ids come from the network: sets of them are keyed (no crafted ids can
// flood one bucket), flat (no allocation per id).
using id_set = internal::keyed_set<message_id>;

// Tasks by urgency: one FIFO per priority, so push and pop are O(1).
template <class T>
class priority_queue {
 public:
  void push_back(std::uint8_t priority, T item) {
    levels_[std::min<std::uint8_t>(priority, max_priority)].push_back(std::move(item));
    ++size_;
  }
  // Ahead of everything of the same priority (resends).
  void push_front(std::uint8_t priority, T item) {
    levels_[std::min<std::uint8_t>(priority, max_priority)].push_front(std::move(item));
    ++size_;
  }
  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }
  // The most urgent, oldest item. Precondition: !empty().
  T& front() { return top_level().front(); }
  void pop() {
    top_level().pop_front();
    --size_;
  }

 private:
  std::deque<T>& top_level() {
    for (int p = max_priority; p > 0; --p)
      if (!levels_[p].empty()) return levels_[p];
    return levels_[0];
  }
  std::array<std::deque<T>, max_priority + 1> levels_;
  std::size_t size_ = 0;
};

}  // namespace zmqkit::pipeline::detail
