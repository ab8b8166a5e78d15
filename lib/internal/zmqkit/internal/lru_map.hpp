// zmqkit/internal/lru_map.hpp — a map that forgets its least recently used
// entries beyond a count and a byte budget: the one LRU of the library.
// Keys come from the network, so the index is keyed (hash flooding); the keys
// live in the recency list, whose nodes never move, so the index views them
// and a reference to a value stays valid until that entry is forgotten.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <string_view>

#include "zmqkit/internal/keyed_hash.hpp"

namespace zmqkit::internal {

template <class Value>
class lru_map {
 public:
  lru_map(std::size_t capacity, std::size_t max_bytes) : capacity_(capacity), max_bytes_(max_bytes) {}

  // Returns: the value for `key`, or nullptr; its recency is unchanged.
  Value* find(std::string_view key) {
    const auto it = index_.find(key);
    return it == index_.end() ? nullptr : &it->second->value;
  }

  // Returns: the entry for `key` (created if new), now the most recent, charged
  // `bytes` (its key and value); older entries are forgotten until both bounds
  // hold again (never the entry returned).
  Value& update(std::string_view key, std::size_t bytes) {
    auto it = index_.find(key);
    if (it == index_.end()) {
      order_.push_front(node{std::string(key), Value{}, 0});
      it = index_.emplace(std::string_view(order_.front().key), order_.begin()).first;
    } else if (it->second != order_.begin()) {
      order_.splice(order_.begin(), order_, it->second);
    }
    node& n = *it->second;
    bytes_ = bytes_ - n.bytes + bytes;
    n.bytes = bytes;
    while (order_.size() > 1 && (order_.size() > capacity_ || bytes_ > max_bytes_)) forget_oldest();
    return n.value;
  }

  // Most recent first.
  template <class F>
  void for_each(F&& f) const {
    for (const auto& n : order_) f(n.key, n.value);
  }

  std::size_t size() const noexcept { return order_.size(); }
  std::size_t bytes() const noexcept { return bytes_; }
  std::uint64_t evicted() const noexcept { return evicted_; }

 private:
  struct node {
    std::string key;
    Value value;
    std::size_t bytes;
  };

  void forget_oldest() {
    index_.erase(std::string_view(order_.back().key));
    bytes_ -= order_.back().bytes;
    order_.pop_back();
    ++evicted_;
  }

  std::size_t capacity_, max_bytes_, bytes_ = 0;
  std::uint64_t evicted_ = 0;
  std::list<node> order_;  // most recently updated first
  keyed_map<std::string_view, typename std::list<node>::iterator> index_;
};

}  // namespace zmqkit::internal
