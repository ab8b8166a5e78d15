#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <tuple>
#include <vector>
#include <zmq_addon.hpp>
#include <zmqkit/error.hpp>
#include <zmqkit/keys.hpp>
#include <zmqkit/actor.hpp>
#include <zmqkit/zap_authenticator.hpp>

namespace zmqkit {

namespace {

namespace fs = std::filesystem;

constexpr const char* zap_endpoint = "inproc://zeromq.zap.01";

// What a directory scan compares, to notice added, removed and rewritten files.
using dir_signature = std::vector<std::tuple<std::string, fs::file_time_type, std::uintmax_t>>;

dir_signature scan(const fs::path& dir) {
  dir_signature sig;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const auto& p = it->path();
    if (p.extension() != ".pub") continue;
    std::error_code fec;
    const auto mtime = fs::last_write_time(p, fec);
    const auto size = fs::file_size(p, fec);
    sig.emplace_back(p.filename().string(), fec ? fs::file_time_type{} : mtime, fec ? 0 : size);
  }
  if (ec)
    throw error(errc::security, dir.string(),
                dir.string() + ": cannot read allow-list directory: " + ec.message());
  std::sort(sig.begin(), sig.end());
  return sig;
}

// The 32-byte binary key (as ZAP delivers it) -> the key file's stem.
using allow_list = std::map<std::string, std::string>;

struct loaded_list {
  allow_list keys;
  std::uint64_t skipped = 0;
};

loaded_list load_dir(const fs::path& dir, const dir_signature& sig) {
  loaded_list out;
  for (const auto& [name, mtime, size] : sig) {
    const fs::path file = dir / name;
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) {
      ++out.skipped;
      continue;
    }
    try {
      const std::string z85 = load_public_key(file);
      std::string raw(32, '\0');
      zmq_z85_decode(reinterpret_cast<std::uint8_t*>(raw.data()), z85.c_str());
      out.keys.emplace(std::move(raw), file.stem().string());
    } catch (const error&) {
      ++out.skipped;  // one bad file must not lock every client out
    }
  }
  return out;
}

// A ZAP metadata block (ZMTP property encoding) with one property.
std::string metadata_property(const std::string& name, const std::string& value) {
  std::string out;
  out.push_back(static_cast<char>(name.size()));
  out += name;
  const auto n = static_cast<std::uint32_t>(value.size());
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((n >> shift) & 0xff));
  out += value;
  return out;
}

}  // namespace

struct zap_authenticator::impl {
  zap_options options;
  zmq::socket_t zap;  // the handler thread's

  // One allow-list per served domain (domain "" = any domain without its own list).
  struct domain_list {
    std::string domain;
    fs::path dir;  // empty: an open domain, any CURVE key admitted
    dir_signature signature;
    allow_list keys;
  };
  std::vector<domain_list> lists;  // handler thread only (after start)

  std::atomic<std::uint64_t> accepted{0}, refused{0}, malformed{0}, reloads{0}, skipped{0}, allowed{0},
      refused_unknown_key{0}, refused_not_curve{0}, refused_domain{0};

  // Loads every directory whose signature changed (or all when `force`); all or
  // nothing, so a failure keeps the previous lists. Throws on an unreadable directory.
  void load(bool force) {
    std::vector<dir_signature> sigs;
    for (const auto& l : lists) sigs.push_back(l.dir.empty() ? dir_signature{} : scan(l.dir));
    bool changed = force;
    for (std::size_t i = 0; i < lists.size(); ++i) changed = changed || sigs[i] != lists[i].signature;
    if (!changed) return;
    std::uint64_t skipped_now = 0, allowed_now = 0;
    for (std::size_t i = 0; i < lists.size(); ++i) {
      auto loaded = lists[i].dir.empty() ? loaded_list{} : load_dir(lists[i].dir, sigs[i]);
      lists[i].keys = std::move(loaded.keys);
      lists[i].signature = std::move(sigs[i]);
      skipped_now += loaded.skipped;
      allowed_now += lists[i].keys.size();
    }
    skipped = skipped_now;
    allowed = allowed_now;
    ++reloads;
  }

  const domain_list* list_for(const std::string& domain) const {
    const domain_list* wildcard = nullptr;
    for (const auto& l : lists) {
      if (l.domain == domain) return &l;
      if (l.domain.empty()) wildcard = &l;
    }
    return wildcard;
  }

  void answer(std::vector<zmq::message_t>& request) {
    // [routing id, empty, version, request id, domain, address, identity, mechanism, credentials...]
    if (request.size() < 8 || request[1].size() != 0 || request[2].to_string_view() != "1.0") {
      ++malformed;
      return;
    }
    const std::string domain(request[4].to_string_view());
    const std::string mechanism(request[7].to_string_view());
    std::string status = "400", text, user_id, metadata;
    const domain_list* list = list_for(domain);
    if (list == nullptr) {
      text = "domain not served";
      ++refused_domain;
    } else if (mechanism != "CURVE") {
      text = "mechanism not CURVE";
      ++refused_not_curve;
    } else if (request.size() < 9 || request[8].size() != 32) {
      ++malformed;
      text = "malformed CURVE credentials";
    } else {
      const auto it = list->keys.find(std::string(request[8].to_string_view()));
      if (!list->dir.empty() && it == list->keys.end()) {
        text = "key not allowed";
        ++refused_unknown_key;
      } else {
        status = "200";
        text = "OK";
        std::array<char, 41> z85{};
        zmq_z85_encode(z85.data(), static_cast<const std::uint8_t*>(request[8].data()), 32);
        user_id = z85.data();
        if (it != list->keys.end()) metadata = metadata_property("X-Key-Name", it->second);
      }
    }
    ++(status == "200" ? accepted : refused);
    std::array<zmq::message_t, 8> reply{zmq::message_t(request[0].data(), request[0].size()),
                                        zmq::message_t(),
                                        zmq::message_t(std::string_view("1.0")),
                                        zmq::message_t(request[3].data(), request[3].size()),
                                        zmq::message_t(status),
                                        zmq::message_t(text),
                                        zmq::message_t(user_id),
                                        zmq::message_t(metadata)};
    zmq::send_multipart(zap, reply, zmq::send_flags::dontwait);
  }

  // The handler thread's loop: ZAP requests, reload commands on the pipe, the periodic scan.
  void serve(loop& l, zmq::socket_t& pipe) {
    l.add(zap, [this] {
      std::vector<zmq::message_t> request;
      for (int i = 0; i < 256; ++i) {  // a batch: the loop comes back for more
        request.clear();
        if (!zmq::recv_multipart(zap, std::back_inserter(request), zmq::recv_flags::dontwait)) return;
        answer(request);
      }
    });
    l.add(pipe, [this, &pipe] {
      zmq::message_t command;
      while (pipe.recv(command, zmq::recv_flags::dontwait)) {
        std::string result = "ok";
        try {
          load(true);
        } catch (const error& e) {
          result = e.what();
        }
        pipe.send(zmq::buffer(result), zmq::send_flags::dontwait);
      }
    });
    if (options.reload_interval.count() > 0)
      l.every(options.reload_interval, [this] {
        try {
          load(false);
        } catch (const error&) {
          // The directory vanished or is unreadable: keep the last good list.
        }
      });
  }
  std::optional<actor> handler;  // last: stopped and joined before the rest goes
};

zap_authenticator::zap_authenticator(zmq::context_t& ctx, zap_options options)
    : impl_(make_pimpl<impl>()) {
  auto& m = *impl_;
  m.options = std::move(options);
  if (!m.options.allow_dir.empty()) m.lists.push_back({m.options.domain, m.options.allow_dir, {}, {}});
  for (const auto& [domain, dir] : m.options.domain_dirs) m.lists.push_back({domain, dir, {}, {}});
  for (const auto& domain : m.options.open_domains) m.lists.push_back({domain, {}, {}, {}});
  if (m.lists.empty())
    throw error(errc::bad_config, "allow_dir", "zap_authenticator: no allow-list directory given");
  m.load(true);
  m.zap = zmq::socket_t(ctx, zmq::socket_type::router);
  m.zap.set(zmq::sockopt::linger, 0);
  try {
    m.zap.bind(zap_endpoint);
  } catch (const zmq::error_t& e) {
    throw error(errc::security, zap_endpoint,
                std::string("cannot bind the ZAP handler (another one on this context?): ") + e.what());
  }
  // The socket moves to the handler thread here; thread creation is the memory barrier libzmq asks for.
  m.handler.emplace(ctx, [&m](loop& l, zmq::socket_t& pipe) { m.serve(l, pipe); }, *m.options.clock);
  m.handler->pipe().set(zmq::sockopt::rcvtimeo, 5000);
  m.handler->pipe().set(zmq::sockopt::sndtimeo, 5000);
}

void zap_authenticator::reload() {
  auto& m = *impl_;
  if (!m.handler->pipe().send(zmq::str_buffer("reload"), zmq::send_flags::none))
    throw error(errc::timeout, "zap_authenticator", "ZAP handler did not take the reload request");
  zmq::message_t result;
  if (!m.handler->pipe().recv(result))
    throw error(errc::timeout, "zap_authenticator",
                "ZAP handler did not answer the reload request within 5 s");
  if (result.to_string_view() != "ok")
    throw error(errc::security, "allow-list", std::string(result.to_string_view()));
}

zap_stats zap_authenticator::stats() const {
  const auto& m = *impl_;
  return {m.accepted, m.refused, m.malformed, m.reloads, m.skipped, m.allowed,
          m.refused_unknown_key, m.refused_not_curve, m.refused_domain};
}

}  // namespace zmqkit
