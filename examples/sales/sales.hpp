// sales.hpp — the message bodies of the sales example, shared by every role.
// Plain structs packed as msgpack maps (field names on the wire).
#pragma once

#include <cstdint>
#include <msgpack.hpp>
#include <string>

namespace sales {

// order.place (shop → order worker, through zmqkit-queue; VIP orders at priority 9)
struct order {
  std::int64_t order_no = 0;
  std::string sku;
  std::int64_t quantity = 0;
  bool vip = false;
  MSGPACK_DEFINE_MAP(order_no, sku, quantity, vip);
};

// order.confirmed (the reply)
struct order_confirmation {
  std::int64_t order_no = 0;
  std::int64_t processed_seq = 0;  // the order in which the worker handled it (1, 2, ...)
  std::int64_t on_hand = 0;        // stock of the sku afterwards
  MSGPACK_DEFINE_MAP(order_no, processed_seq, on_hand);
};

// stock.changed (published by the order worker after every order)
struct stock_level {
  std::string sku;
  std::int64_t on_hand = 0;
  MSGPACK_DEFINE_MAP(sku, on_hand);
};

// payment.authorize (shop → payment worker, with a TTL)
struct payment {
  std::int64_t payment_no = 0;
  std::int64_t amount_cents = 0;
  MSGPACK_DEFINE_MAP(payment_no, amount_cents);
};

// payment.authorized (the reply)
struct authorisation {
  std::int64_t payment_no = 0;
  std::int64_t charged_at_ns = 0;  // wall clock, ns since the epoch
  MSGPACK_DEFINE_MAP(payment_no, charged_at_ns);
};

// restock.request (ventilator → restock worker) and restock.ordered (worker → sink)
struct restock_request {
  std::string sku;
  std::int64_t on_hand = 0;
  std::int64_t target = 0;
  MSGPACK_DEFINE_MAP(sku, on_hand, target);
};
struct restock_order {
  std::string sku;
  std::int64_t quantity = 0;
  MSGPACK_DEFINE_MAP(sku, quantity);
};

}  // namespace sales
