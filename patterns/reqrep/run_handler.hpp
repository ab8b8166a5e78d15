// Running a handler for the worker and the server: private to patterns/reqrep
// (the public handler.hpp says what a handler is, not how it is run).
#pragma once

#include <optional>
#include <string_view>
#include <variant>
#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/reqrep/handler.hpp>

#include "executor.hpp"

namespace zmqkit::reqrep {

namespace detail {

// Returns: the decoded request, or the bad_request reply that answers a malformed one.
std::variant<envelope, zmq::message_t> decode_request(std::string_view body, const decode_limits& limits,
                                                      const clock& clk);

// Returns: the `expired` reply when the request's TTL has passed, else nullopt
// (without a TTL, no clock read).
std::optional<zmq::message_t> expired_reply(const envelope& request, const clock& clk);

// Runs `h` on `request` and returns the encoded reply frame: the handler's
// reply, or an error reply when it throws or returns an unencodable envelope.
// `failed` is set when the answer is an error reply made here.
zmq::message_t run_handler(const handler& h, const envelope& request, const clock& clk, bool& failed);

// Same for a plain body: the handler's bytes, or empty when it throws.
zmq::message_t run_plain_handler(const plain_handler& h, std::string_view body, bool& failed);

// On a handler thread: run_handler(), unless the request's TTL passed while it
// waited for the thread (then an `expired` reply, the handler not run).
job_result run_request_job(const handler& h, const envelope& request, const clock& clk);
job_result run_plain_job(const plain_handler& h, std::string_view body);

}  // namespace detail

}  // namespace zmqkit::reqrep
