#include <zmqkit/reqrep/reply_cache.hpp>

#include <zmqkit/internal/pimpl.hpp>
#include <zmqkit/internal/reply_store.hpp>

namespace zmqkit::reqrep {

struct reply_cache::impl {
  internal::reply_store store;
};

reply_cache::reply_cache(reply_cache_options opts)
    : impl_(make_pimpl<impl>(impl{internal::reply_store({.max_entries = opts.max_entries,
                                                                .max_bytes = opts.max_bytes,
                                                                .max_age = opts.max_age})})) {}

void reply_cache::insert(const message_id& id, const zmq::message_t& reply, steady_time now) {
  impl_->store.insert(id, reply, now);
}
const zmq::message_t* reply_cache::find(const message_id& id, steady_time now) {
  return impl_->store.find(id, now);
}
void reply_cache::expire(steady_time now) { impl_->store.expire(now); }
std::size_t reply_cache::size() const noexcept { return impl_->store.size(); }
std::size_t reply_cache::bytes() const noexcept { return impl_->store.bytes(); }
std::size_t reply_cache::evicted() const noexcept { return impl_->store.evicted(); }

}  // namespace zmqkit::reqrep

template struct zmqkit::pimpl_deleter<zmqkit::reqrep::reply_cache::impl>;
