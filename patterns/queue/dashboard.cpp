#include "dashboard.hpp"

#include <nlohmann/json.hpp>
#include <zmqkit/metrics_http.hpp>

namespace zmqkit::embedded {
extern const std::string_view queue_dashboard_html;  // dashboard/main.html, see CMakeLists.txt
}

namespace zmqkit::queue {

namespace {

// A worker identity as text: itself when printable ASCII, else 0x + hex (ROUTER's
// generated identities are binary; JSON strings must be UTF-8).
std::string printable(std::string_view bytes) {
  bool plain = !bytes.empty();
  for (unsigned char c : bytes) plain = plain && c >= 0x20 && c < 0x7f;
  if (plain) return std::string(bytes);
  static constexpr char digits[] = "0123456789abcdef";
  std::string out = "0x";
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

}  // namespace

std::string status_json(const device_status& status, std::string_view version) {
  const device_stats& s = status.stats;
  nlohmann::json j = dashboard_stats("zmqkit-queue", version, status.uptime);
  j["draining"] = status.draining;
  j["rates"] = {{"received_per_second", status.received_per_second},
                {"replied_per_second", status.replied_per_second}};
  j["counters"] = {{"received", s.received},
                   {"routed", s.routed},
                   {"replied", s.replied},
                   {"expired", s.expired},
                   {"requeued", s.requeued},
                   {"dead_lettered", s.dead_lettered},
                   {"duplicates_suppressed", s.duplicates_suppressed},
                   {"answered_from_cache", s.answered_from_cache}};
  j["rejected"] = nlohmann::json::object();
  for (const auto& [code, n] : s.rejected) j["rejected"][code] = n;
  j["dropped"] = nlohmann::json::object();
  for (const auto& [reason, n] : s.dropped) j["dropped"][reason] = n;
  nlohmann::json by_type = nlohmann::json::object();
  for (const auto& [type, n] : s.pending_by_type) by_type[type] = n;
  j["backlog"] = {{"pending", s.pending},
                  {"in_flight", s.in_flight},
                  {"by_priority", s.pending_by_priority},
                  {"by_type", by_type}};
  nlohmann::json list = nlohmann::json::array();
  for (const worker_status& w : status.workers)
    list.push_back({{"identity", printable(w.identity)},
                    {"prefixes", w.prefixes},
                    {"capacity", w.capacity},
                    {"held", w.held},
                    {"last_heard_ms", w.last_heard.count()}});
  j["workers"] = {{"total", status.workers_total},
                  {"ready", s.workers_ready},
                  {"busy", s.workers_busy},
                  {"capacity", s.worker_capacity},
                  {"list", list}};
  j["reply_cache_size"] = s.reply_cache_size;
  if (s.has_store)
    j["store"] = {{"stored", s.stored},
                  {"acked", s.acked},
                  {"recovered", s.recovered},
                  {"bytes", s.store_bytes},
                  {"syncs", s.store_syncs},
                  {"sync_us", s.store_sync_us},
                  {"last_sync_us", s.store_last_sync_us},
                  {"errors", s.store_errors}};
  else
    j["store"] = nullptr;
  return dump_dashboard_stats(j);
}

std::string_view dashboard_html() { return embedded::queue_dashboard_html; }

}  // namespace zmqkit::queue
