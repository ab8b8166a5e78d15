// zmqkit/zap_authenticator.hpp — admits only CURVE clients whose public key is
// on an allow-list (a directory of public key files).
//
//   ```cpp
//   zmqkit::zap_authenticator auth(ctx, {.allow_dir = "/etc/zmqkit/clients"});
//   zmqkit::socket_options opts;
//   opts.security = zmqkit::load_curve_server("/etc/zmqkit/queue.key");
//   zmq::socket_t router(ctx, zmq::socket_type::router);
//   zmqkit::apply(router, opts);       // same context: the ZAP handler sees its handshakes
//   router.bind("tcp://*:5555");
//   zmq::message_t msg;
//   if (router.recv(msg)) use(msg.gets("User-Id"));  // the client's Z85 public key
//   ```
//
// It is the ZAP handler (RFC 27) of one context: a ROUTER bound to
// inproc://zeromq.zap.01, served by a thread the object owns. The constructor
// returns once the allow-list is loaded and the handler is bound; the
// destructor stops and joins the thread. At most one per context.
//
// Allow-list: every regular file named *.pub in `allow_dir` (see zmqkit/keys.hpp
// for the format). Unreadable or malformed files are skipped and counted. The
// directory is re-read when reload() is called and, automatically, when a scan
// every `reload_interval` finds a file added, removed or modified (mtime/size).
//
// Replies: 200 with User-Id = the client's Z85 public key and the metadata
// property "X-Key-Name" = the key file's stem, or 400 ("key not allowed",
// "mechanism not CURVE", "domain not served"). A request is checked against the
// list of its ZAP domain, or else the list with an empty domain, or refused. Without a running authenticator,
// libzmq 4.3 admits every CURVE client that knows the server's public key.
//
// Thread-safety: the counters may be read from any thread; reload() is called
// from the thread that owns the object.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>
#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/error.hpp>
#include <zmqkit/pimpl.hpp>

namespace zmqkit {

struct zap_options {
  std::filesystem::path allow_dir;  // directory of *.pub files, for `domain`
  std::string domain;               // the ZAP domain allow_dir serves; empty = every domain not below
  // More allow-lists, one per ZAP domain (a socket's curve_server::zap_domain), e.g.
  // {{"frontend", "/etc/q/clients"}, {"backend", "/etc/q/workers"}}: one handler per
  // context serves sockets that admit different peers.
  std::map<std::string, std::filesystem::path> domain_dirs;
  // ZAP domains whose CURVE clients are admitted with any key: encryption without
  // authentication, for a socket that shares the context with authenticated ones
  // (with a handler running, libzmq asks it about every CURVE handshake).
  std::vector<std::string> open_domains;
  std::chrono::milliseconds reload_interval{1000};  // directory scan period; <= 0 disables
  const zmqkit::clock* clock = &zmqkit::clock::real();
};

struct zap_stats {
  std::uint64_t accepted = 0;
  std::uint64_t refused = 0;
  std::uint64_t malformed_requests = 0;  // ZAP requests that broke RFC 27 (dropped)
  std::uint64_t reloads = 0;             // allow-list loads, the first one included
  std::uint64_t skipped_files = 0;       // *.pub files unreadable or malformed, last load
  std::uint64_t allowed_keys = 0;        // keys on the allow-list, last load
  // `refused` by reason. A plaintext client never reaches ZAP (libzmq refuses the
  // mechanism mismatch first): handshake_monitor counts those.
  std::uint64_t refused_unknown_key = 0;  // a CURVE key not on the domain's allow-list
  std::uint64_t refused_not_curve = 0;    // a ZAP request for another mechanism (PLAIN, NULL with a domain)
  std::uint64_t refused_domain = 0;       // a ZAP domain with no allow-list
};
using zap_counters [[deprecated("renamed zap_stats")]] = zap_stats;

class zap_authenticator {
 public:
  // Throws: zmqkit::error{errc::security} when an allow-list is not a readable directory
  //         or another ZAP handler is already bound on `ctx`; errc::bad_config when no
  //         directory is given.
  zap_authenticator(zmq::context_t& ctx, zap_options options);

  // Re-reads the allow-list now. Returns once the new list is in effect.
  // Throws: zmqkit::error{errc::security} when the directory cannot be read
  //         (the previous list stays in effect); zmqkit::error{errc::timeout}
  //         when the handler thread does not answer within 5 s.
  void reload();

  zap_stats stats() const;
  [[deprecated("renamed stats()")]] zap_stats counters() const { return stats(); }

 private:
  struct impl;
  pimpl<impl> impl_;
};

}  // namespace zmqkit
