#include "pending_queue.hpp"

namespace zmqkit::queue::detail {

void pending_queue::insert(handle h, std::uint8_t priority, std::string_view type, std::int64_t key) {
  auto& l = levels_[priority];
  auto it = l.find(type);
  if (it == l.end()) it = l.emplace(std::string(type), group{}).first;
  if (it->second.emplace(key, h).second) {
    ++per_type_[std::string(type)];
    ++size_;
    ++per_priority_[priority];
  }
}

void pending_queue::erase(std::uint8_t priority, std::string_view type, std::int64_t key) {
  auto& l = levels_[priority];
  const auto it = l.find(type);
  if (it == l.end()) return;
  if (it->second.erase(key) > 0) {
    uncount(type);
    --size_;
    --per_priority_[priority];
  }
  if (it->second.empty()) l.erase(it);
}

std::map<std::string, std::size_t> pending_queue::size_by_type() const {
  std::map<std::string, std::size_t> out;
  for (const auto& l : levels_)
    for (const auto& [type, g] : l) out[type.empty() ? std::string("(plain)") : type] += g.size();
  return out;
}

}  // namespace zmqkit::queue::detail
