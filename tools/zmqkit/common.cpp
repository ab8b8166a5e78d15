#include "common.hpp"

#include <csignal>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <thread>
#include <zmqkit/clock.hpp>
#include <zmqkit/keys.hpp>
#include <zmqkit/poll.hpp>

namespace zmqkit::tool {

std::atomic<bool> interrupted{false};

namespace {

extern "C" void on_signal(int) { interrupted.store(true); }

// Slices blocking waits so that an interruption is seen promptly even when a
// signal lands between the check and the wait.
constexpr std::chrono::milliseconds slice{100};

std::string read_all(const std::string& path, const char* what) {
  if (path == "-") {
    std::string data((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    return data;
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) throw failure(exit_usage, std::string("cannot read ") + what + " file '" + path + "'");
  return std::string((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
}

}  // namespace

std::string timeout_message(const std::string& what, long long timeout_ms, const std::string& where) {
  return "timeout: " + what + " within " + std::to_string(timeout_ms) + " ms (" + where + ")";
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool wait_readable(zmq::socket_t& socket, std::chrono::milliseconds timeout) {
  const bool forever = timeout.count() < 0;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (interrupted.load()) return false;
    auto left = forever ? slice
                        : std::chrono::duration_cast<std::chrono::milliseconds>(
                              deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) left = std::chrono::milliseconds(0);
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    if (zmqkit::poll(&item, 1, std::min(left, slice)) > 0) return true;  // a signal: look at `interrupted`
    if (!forever && std::chrono::steady_clock::now() >= deadline) return false;
  }
}

void sleep_interruptibly(std::chrono::milliseconds d) {
  const auto end = std::chrono::steady_clock::now() + d;
  while (!interrupted.load()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= end) return;
    std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(end - now, slice));
  }
}

std::string endpoint_options::describe() const {
  std::string out;
  for (const auto* list : {&connect, &bind})
    for (const auto& ep : *list) out += (out.empty() ? "" : ", ") + ep;
  return out;
}

void add_receive_limit_options(CLI::App& app, long long& count, long long& timeout_ms) {
  add_checked_option(app, "-n,--count", count, "Stop after N envelopes (0 = no limit)",
                     CLI::NonNegativeNumber);
  app.add_option("--timeout", timeout_ms,
                 "Stop when nothing arrives for MS; an error unless --count (or one) envelopes arrived "
                 "(-1 = wait forever)")
      ->capture_default_str();
}

void require_received(long long received, long long count, long long timeout_ms, const endpoint_options& ep) {
  if (received >= std::max(count, 1LL)) return;
  throw failure(exit_failure, timeout_message("received " + std::to_string(received) +
                                                  (count > 0 ? " of " + std::to_string(count) : "") +
                                                  " envelopes; nothing arrived",
                                              timeout_ms, ep.describe()));
}

void add_endpoint_options(CLI::App& app, endpoint_options& opts) {
  app.add_option("-c,--connect", opts.connect,
                 "Endpoint to connect to (repeatable), e.g. tcp://127.0.0.1:5555")
      ->group("Endpoints");
  app.add_option("-b,--bind", opts.bind, "Endpoint to bind (repeatable), e.g. tcp://*:5555")
      ->group("Endpoints");
  auto security = [&](const std::string& name, std::string& key, const std::string& help) {
    return app.add_option(name, key, help)->group("Security");
  };
  auto* server_key = security("--curve-server-key", opts.curve_server_key,
                              "CURVE: the server's public key (Z85); enables encryption");
  security("--curve-server-key-file", opts.curve_server_key_file,
           "CURVE: the server's public key file (FILE.pub from zmqkit-keygen); enables encryption")
      ->excludes(server_key);
  auto* public_key = security("--curve-public-key", opts.curve_public_key,
                              "CURVE: our public key, Z85 (default: ephemeral)");
  auto* secret_key = security("--curve-secret-key", opts.curve_secret_key,
                              "CURVE: our secret key, Z85 (visible to ps: prefer --curve-secret-key-file)");
  // The key file holds both halves, so it stands for both inline keys.
  security("--curve-secret-key-file", opts.curve_secret_key_file,
           "CURVE: our secret key file (FILE.key from zmqkit-keygen, mode 0600; the public key is "
           "derived from it)")
      ->excludes(public_key)
      ->excludes(secret_key);
}

socket_options make_socket_options(const endpoint_options& opts) {
  socket_options so{};
  if (opts.curve_server_key.empty() && opts.curve_server_key_file.empty()) {
    if (!opts.curve_secret_key_file.empty() || !opts.curve_secret_key.empty())
      throw failure(exit_usage, "our CURVE keys need the server's: give --curve-server-key(-file)");
    return so;
  }
  curve_client client{opts.curve_public_key, opts.curve_secret_key, opts.curve_server_key};
  // The key file loaders parse the files' comment lines and refuse a secret others can read.
  if (!opts.curve_server_key_file.empty()) client.server_key = load_public_key(opts.curve_server_key_file);
  if (!opts.curve_secret_key_file.empty()) {
    const curve_keypair ours = load_secret_key(opts.curve_secret_key_file);
    client.public_key = ours.public_key;
    client.secret_key = ours.secret_key;
  }
  if (client.public_key.empty() != client.secret_key.empty())
    throw failure(exit_usage, "give both --curve-public-key and --curve-secret-key, or neither");
  if (client.public_key.empty()) {
    const curve_keypair ephemeral = generate_keypair();
    client.public_key = ephemeral.public_key;
    client.secret_key = ephemeral.secret_key;
  }
  so.security = std::move(client);
  return so;
}

void attach(zmq::socket_t& socket, const endpoint_options& opts) {
  if (opts.connect.empty() && opts.bind.empty())
    throw failure(exit_usage, "give an endpoint: --connect or --bind");
  auto act = [&](const std::string& ep, bool bind) {
    try {
      bind ? socket.bind(ep) : socket.connect(ep);
    } catch (const zmq::error_t& e) {
      const bool malformed = e.num() == EINVAL || e.num() == EPROTONOSUPPORT || e.num() == ENOCOMPATPROTO;
      throw failure(malformed ? exit_usage : exit_failure,
                    std::string(bind ? "cannot bind " : "cannot connect to ") + ep + ": " + e.what());
    }
  };
  for (const auto& ep : opts.bind) act(ep, true);
  for (const auto& ep : opts.connect) act(ep, false);
}

void add_envelope_options(CLI::App& app, envelope_input& in, bool allow_jsonl) {
  app.add_option("-t,--type", in.type, "Envelope type, e.g. order.created")->group("Envelope");
  add_checked_option(app, "-p,--priority", in.priority, "Priority 0-9 (9 most urgent)", CLI::Range(0, 9))
      ->group("Envelope");
  add_checked_option(app, "--ttl", in.ttl_ms, "Time to live in ms (0 = never expires)",
                     CLI::NonNegativeNumber)
      ->group("Envelope");
  app.add_option("-H,--header", in.headers, "Header KEY=VALUE (repeatable)")->group("Envelope");
  auto* json =
      app.add_option("-j,--json", in.json_body,
                     "Body as JSON, sent as msgpack; @FILE or @- reads the JSON from a file or stdin")
          ->group("Body");
  auto* raw =
      app.add_option("-r,--raw", in.raw_file, "Body as raw bytes from FILE (- = stdin)")->group("Body");
  json->excludes(raw);
  if (allow_jsonl) {
    auto* jsonl = app.add_flag("--jsonl", in.jsonl,
                               "Read envelopes from stdin, one JSON object per line (as recv/sub print them)")
                      ->group("Body");
    jsonl->excludes(json)->excludes(raw);
  }
}

envelope_source::envelope_source(const envelope_input& in) : in_(in) {
  if (in.jsonl) {
    if (!in.type.empty() || !in.headers.empty())
      throw failure(exit_usage, "--jsonl takes type and headers from each line; drop --type/--header");
    return;
  }
  if (in.type.empty()) throw failure(exit_usage, "--type is required (or --jsonl)");
  if (!in.json_body.empty()) {
    std::string text = in.json_body;
    std::string what = "--json";
    if (text.front() == '@') {
      what = text == "@-" ? "stdin" : text.substr(1);
      text = read_all(text == "@-" ? "-" : text.substr(1), "JSON");
    }
    try {
      body_ = json_to_msgpack(parse_json(text, what));
    } catch (const zmqkit::error& e) {
      throw failure(exit_usage, e.what());
    }
  } else if (!in.raw_file.empty()) {
    body_ = read_all(in.raw_file, "body");
  }
  for (const auto& h : in.headers) {
    const auto eq = h.find('=');
    if (eq == std::string::npos || eq == 0)
      throw failure(exit_usage, "--header wants KEY=VALUE, got '" + h + "'");
  }
}

std::optional<envelope> envelope_source::next() {
  if (in_.jsonl) {
    std::string line;
    while (std::getline(std::cin, line)) {
      ++line_no_;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      try {
        return envelope_from_json(parse_json(line, "stdin line " + std::to_string(line_no_)));
      } catch (const zmqkit::error& e) {
        std::string msg = e.what();
        if (msg.rfind("invalid JSON", 0) != 0) msg = "stdin line " + std::to_string(line_no_) + ": " + msg;
        throw failure(exit_usage, msg);
      }
    }
    return std::nullopt;
  }
  if (remaining_ <= 0) return std::nullopt;
  --remaining_;
  envelope env = make_envelope(in_.type);
  env.priority = static_cast<std::uint8_t>(in_.priority);
  env.ttl = std::chrono::milliseconds(in_.ttl_ms);
  env.body = body_;
  for (const auto& h : in_.headers) {
    const auto eq = h.find('=');
    env.headers.insert_or_assign(h.substr(0, eq), h.substr(eq + 1));
  }
  return env;
}

void send_each(envelope_source& source, const send_options& opts, const std::string& not_taken,
               const std::function<bool(envelope&)>& send) {
  long long sent = 0;
  while (auto env = source.next()) {
    if (interrupted.load()) return;
    bool taken;
    try {
      taken = send(*env);
    } catch (const zmqkit::error& e) {
      throw failure(exit_usage, e.what());
    }
    if (!taken)
      throw failure(exit_failure, timeout_message(not_taken + " envelope " + std::to_string(sent + 1),
                                                  opts.timeout_ms, opts.ep.describe()));
    ++sent;
    if (opts.interval_ms > 0) sleep_interruptibly(ms(opts.interval_ms));
  }
}

void add_output_options(CLI::App& app, output_options& out) {
  app.add_flag("--body-only", out.body_only, "Print only each body (as JSON), one per line")->group("Output");
}

void print_envelope(const envelope& env, const output_options& out) {
  std::cout << dump_line(out.body_only ? body_to_json(env.body) : envelope_to_json(env)) << '\n'
            << std::flush;
}

}  // namespace zmqkit::tool
