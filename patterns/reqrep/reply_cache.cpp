#include <zmqkit/reqrep/reply_cache.hpp>

namespace zmqkit::reqrep {

void reply_cache::insert(const message_id& id, const zmq::message_t& reply, steady_time now) {
  if (opts_.max_entries == 0) return;
  expire(now);
  zmq::message_t copy;
  copy.copy(const_cast<zmq::message_t&>(reply));  // zmq_msg_copy does not modify its source
  auto [it, fresh] = index_.try_emplace(id);
  if (!fresh) order_.erase(it->second);  // a newer reply for the same id replaces the old one
  order_.push_back(entry{id, std::move(copy), now});
  it->second = std::prev(order_.end());
  while (index_.size() > opts_.max_entries) erase_front();
}

const zmq::message_t* reply_cache::find(const message_id& id, steady_time now) {
  expire(now);
  const auto it = index_.find(id);
  return it == index_.end() ? nullptr : &it->second->reply;
}

void reply_cache::expire(steady_time now) {
  while (!order_.empty() && now - order_.front().stored >= opts_.max_age) erase_front();
}

void reply_cache::erase_front() {
  index_.erase(order_.front().id);
  order_.pop_front();
  ++evicted_;
}

}  // namespace zmqkit::reqrep
