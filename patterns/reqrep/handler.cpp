#include <cerrno>
#include "run_handler.hpp"

namespace zmqkit::reqrep::detail {

std::variant<envelope, zmq::message_t> decode_request(std::string_view body, const decode_limits& limits,
                                                      const clock& clk) {
  try {
    return decode(body, limits);
  } catch (const error& e) {
    return encode(make_error_reply(request_id_of(body), reply_error::bad_request, e.what(), clk));
  }
}

std::optional<zmq::message_t> expired_reply(const envelope& request, const clock& clk) {
  if (request.ttl.count() == 0 || !request.expired(clk.wall_now())) return std::nullopt;
  return encode(make_error_reply(request.id, reply_error::expired, "ttl elapsed before execution", clk));
}

zmq::message_t run_handler(const handler& h, const envelope& request, const clock& clk, bool& failed) {
  failed = false;
  std::string code;
  std::string reason;
  try {
    envelope reply = h(request);
    if (!reply.correlation_id) reply.correlation_id = request.id;
    return encode(reply);
  } catch (const handler_error& e) {
    code = e.code().empty() ? std::string(to_string(reply_error::bad_request)) : e.code();
    reason = e.what();
  } catch (const error& e) {
    // A body that does not convert (body_as) is the requester's mistake; any other
    // zmqkit failure inside a handler is the server's.
    code = to_string(e.code() == errc::bad_body ? reply_error::bad_request : reply_error::internal);
    reason = e.what();
  } catch (const std::exception& e) {
    code = to_string(reply_error::internal);
    reason = e.what();
  } catch (...) {
    code = to_string(reply_error::internal);
    reason = "handler threw a non-standard exception";
  }
  failed = true;
  return encode(make_error_reply(request.id, code, reason, clk));
}

zmq::message_t run_plain_handler(const plain_handler& h, std::string_view body, bool& failed) {
  failed = false;
  try {
    const std::string out = h(body);
    return zmq::message_t(out.data(), out.size());
  } catch (...) {
    failed = true;  // a plain peer has no error reply format: answer empty
    return zmq::message_t();
  }
}

job_result run_request_job(const handler& h, const envelope& request, const clock& clk) {
  if (std::optional<zmq::message_t> refusal = expired_reply(request, clk))
    return {job_outcome::expired, std::move(*refusal)};
  bool failed = false;
  zmq::message_t reply = run_handler(h, request, clk, failed);
  return {failed ? job_outcome::handler_failed : job_outcome::ok, std::move(reply)};
}

job_result run_plain_job(const plain_handler& h, std::string_view body) {
  bool failed = false;
  zmq::message_t reply = run_plain_handler(h, body, failed);
  return {failed ? job_outcome::handler_failed : job_outcome::ok, std::move(reply)};
}

}  // namespace zmqkit::reqrep::detail
