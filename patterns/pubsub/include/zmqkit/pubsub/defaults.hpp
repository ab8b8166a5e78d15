// zmqkit/pubsub/defaults.hpp — socket defaults shared by the pub/sub roles.
#pragma once

#include <zmqkit/socket_options.hpp>

namespace zmqkit::pubsub {

// Messages queued per subscriber connection, at the publisher (send) and at the
// subscriber (receive), before PUB drops. 100 000 carries a burst of that size
// to a subscriber that is reading (1000, the generic default, lost ~25 % of a
// 3000-message burst). Memory is bounded by count x message size: per
// subscriber connection, at most send_hwm x max_message_bytes at the publisher;
// lower either for large messages or many subscribers.
inline constexpr int burst_hwm = 100'000;

inline zmqkit::socket_options burst_socket_options() {
  zmqkit::socket_options opts;
  opts.send_hwm = burst_hwm;
  opts.receive_hwm = burst_hwm;
  return opts;
}

}  // namespace zmqkit::pubsub
