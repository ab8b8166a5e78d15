// Pieces every zmqkit subcommand shares: exit codes, endpoints, envelope input
// options, interruption, and output.
#pragma once

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/socket_options.hpp>

#include "json_codec.hpp"

namespace zmqkit::tool {

// Exit codes, as documented in README.md.
inline constexpr int exit_ok = 0;
inline constexpr int exit_failure = 1;      // timeout, unreachable peer, network failure
inline constexpr int exit_usage = 2;        // unknown flag, bad argument, invalid JSON input
inline constexpr int exit_error_reply = 3;  // `request` got a zmk.error reply

// A failure reported as one line on stderr and an exit code.
class failure : public std::runtime_error {
 public:
  failure(int exit_code, const std::string& message) : std::runtime_error(message), exit_code_(exit_code) {}
  int exit_code() const noexcept { return exit_code_; }

 private:
  int exit_code_;
};

// "timeout: WHAT within TIMEOUT_MS ms (WHERE)", the shape of the timeout messages.
std::string timeout_message(const std::string& what, long long timeout_ms, const std::string& where);

// A registered subcommand and what runs it once the command line is parsed.
struct command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

// --- options ------------------------------------------------------------------

// Adds an option whose value `validator` checks, its default shown in --help.
template <class T>
CLI::Option* add_checked_option(CLI::App& app, const std::string& name, T& value, const std::string& help,
                                const CLI::Validator& validator) {
  return app.add_option(name, value, help)->check(validator)->capture_default_str();
}

// --- interruption -------------------------------------------------------------

// Set by SIGINT/SIGTERM once install_signal_handlers() ran; loops check it.
extern std::atomic<bool> interrupted;
void install_signal_handlers();

// Waits up to `timeout` (negative = forever) for `socket` to become readable,
// waking on interruption. Returns: true when readable.
bool wait_readable(zmq::socket_t& socket, std::chrono::milliseconds timeout);
// Sleeps for `d` unless interrupted first.
void sleep_interruptibly(std::chrono::milliseconds d);

// --- sockets ------------------------------------------------------------------

struct endpoint_options {
  std::vector<std::string> connect;
  std::vector<std::string> bind;
  std::string curve_server_key;                    // Z85: connect with CURVE to a server with this key
  std::string curve_public_key, curve_secret_key;  // our keys (default: an ephemeral pair)
  std::string curve_server_key_file;               // the same from key files (zmqkit/keys.hpp format),
  std::string curve_secret_key_file;               // as zmqkit-keygen writes them

  std::string describe() const;  // for messages: "tcp://a, tcp://b"
};
void add_endpoint_options(CLI::App& app, endpoint_options& opts);
// The socket options for `opts` (CURVE client keys when a server key is given).
// Throws: zmqkit::error{security} naming the file when a key file is missing,
// malformed or (secret key) readable by others.
socket_options make_socket_options(const endpoint_options& opts);
// Binds and connects `socket`. Throws failure{exit_usage} on a malformed endpoint.
void attach(zmq::socket_t& socket, const endpoint_options& opts);

// --- envelope input -------------------------------------------------------------

struct envelope_input {
  std::string type;
  int priority = default_priority;
  long long ttl_ms = 0;
  std::vector<std::string> headers;  // KEY=VALUE
  std::string json_body;             // JSON text, or @file / @- for a file / stdin
  std::string raw_file;              // raw bytes from a file, - for stdin
  bool jsonl = false;                // stdin: one envelope JSON object per line
};
// Adds -t/--type, -p/--priority, --ttl, -H/--header, -j/--json, -r/--raw and,
// when `allow_jsonl`, --jsonl.
void add_envelope_options(CLI::App& app, envelope_input& in, bool allow_jsonl);

// Produces the envelopes to send one at a time: the one described by the
// options, or each line of stdin with --jsonl. Throws failure{exit_usage} on bad input.
class envelope_source {
 public:
  explicit envelope_source(const envelope_input& in);
  // Returns: the next envelope (a fresh id and timestamp each time unless the
  // JSON line sets them), or nullopt at the end of input. `repeat` applies to the
  // options form only.
  std::optional<envelope> next();
  void set_repeat(long long n) { remaining_ = n; }

 private:
  const envelope_input& in_;
  std::string body_;
  long long remaining_ = 1;
  long long line_no_ = 0;
};

// --- sending --------------------------------------------------------------------

// What the subcommands that send envelopes (send, pub) are given.
struct send_options {
  endpoint_options ep;
  envelope_input in;
  long long count = 1;
  long long interval_ms = 0;
  long long timeout_ms = 5000;  // for a peer to take each envelope
};

// Hands each envelope from `source` to `send`, --interval apart, until the input
// ends or an interruption. `send` returns false when no peer took the envelope
// within --timeout.
// Throws: failure{exit_failure} "timeout: NOT_TAKEN envelope N within ..." then, and
// failure{exit_usage} for an envelope the library refuses (zmqkit::error).
void send_each(envelope_source& source, const send_options& opts, const std::string& not_taken,
               const std::function<bool(envelope&)>& send);

// --- receiving ------------------------------------------------------------------

// -n/--count and --timeout of the subcommands that print what arrives (recv, sub):
// stop after `count` envelopes (0 = no limit), or after `timeout_ms` of silence.
void add_receive_limit_options(CLI::App& app, long long& count, long long& timeout_ms);
// Throws: failure{exit_failure} when fewer than `count` envelopes (with no limit:
// none) were `received` on `ep` before `timeout_ms` of silence ended the wait.
void require_received(long long received, long long count, long long timeout_ms, const endpoint_options& ep);

// --- output -----------------------------------------------------------------------

struct output_options {
  bool body_only = false;
};
void add_output_options(CLI::App& app, output_options& out);
// Prints one envelope as one JSON line on stdout and flushes.
void print_envelope(const envelope& env, const output_options& out);

// Converts a ms option to a duration (negative = forever).
inline std::chrono::milliseconds ms(long long v) { return std::chrono::milliseconds(v); }

}  // namespace zmqkit::tool
